"""Data for the supervised tasks, in the order a job uses it: read (`read`), labels and splits
(`splits`), tokens (`tokens`), batch plans (`batches`).

Tables are read with pyarrow (local paths or URIs such as `s3://`), columns are mapped to
text / text pair (or image) / label, labels become ids, missing splits are carved from train
(stratified, seeded). An image folder (one subfolder per class) is read as a table of paths.
Tokenization happens once, without padding; batches are padded to their own longest row.
`epoch_batches` is the whole batch plan of one epoch for one rank, a pure function of
(seed, epoch), which is what lets a restarted worker skip exactly the batches it already did.
"""

from trainables.data.batches import epoch_batches, eval_batches, length_group_rows, shard_rows
from trainables.data.read import SPLITS, data_file, read_raw_splits, read_table
from trainables.data.splits import Dataset, LabeledSplit, build_dataset, stratified_split
from trainables.data.tokens import Ragged, TokenizedSplit, collate, tokenize_split

__all__ = [
    "SPLITS",
    "Dataset",
    "LabeledSplit",
    "Ragged",
    "TokenizedSplit",
    "build_dataset",
    "collate",
    "data_file",
    "epoch_batches",
    "eval_batches",
    "length_group_rows",
    "read_raw_splits",
    "read_table",
    "shard_rows",
    "stratified_split",
    "tokenize_split",
]
