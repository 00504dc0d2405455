"""Data for classification: read, check, split; for text also tokenize and batch.

Tables are read with pyarrow (local paths or URIs such as `s3://`), columns are mapped to
text / text pair (or image) / label, labels become ids, missing splits are carved from train
(stratified, seeded). An image folder (one subfolder per class) is read as a table of paths.
Tokenization happens once, without padding; batches are padded to their own longest row.
`epoch_batches` is the whole batch plan of one epoch for one rank, a pure function of
(seed, epoch), which is what lets a restarted worker skip exactly the batches it already did.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import torch

from trainables.config import DataConfig
from trainables.demo_data import LABEL_NAMES as DEMO_LABEL_NAMES
from trainables.demo_data import demo_splits
from trainables.errors import DataError
from trainables.labels import label_format, where

SPLITS = ("train", "validation", "test")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class LabeledSplit:
    """One split as plain columns: inputs (texts, or image paths / bytes), optional text
    pairs, labels (the task's array: class ids, regression targets or multi-hot rows; see
    `trainables.labels`)."""

    inputs: list[Any]
    pairs: list[str] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, indices: np.ndarray) -> LabeledSplit:
        pairs = [self.pairs[i] for i in indices] if self.pairs is not None else None
        return LabeledSplit([self.inputs[i] for i in indices], pairs, self.labels[indices])


@dataclass(frozen=True)
class Dataset:
    """The splits of a job and its label names (label id i is `label_names[i]`)."""

    splits: dict[str, LabeledSplit]
    label_names: tuple[str, ...]


# --------------------------------------------------------------------------- reading


def data_file(uri: str, field: str) -> tuple[pa_fs.FileSystem, str]:
    """The filesystem and path of a data file: a local path or a pyarrow URI (`s3://...`).

    Raises:
        DataError: naming `field` when there is no file at `uri`.
    """
    fs, path = pa_fs.FileSystem.from_uri(uri) if "://" in uri else (pa_fs.LocalFileSystem(), uri)
    if fs.get_file_info(path).type != pa_fs.FileType.File:
        raise DataError(f"{field}: file not found: {uri}")
    return fs, path


def read_table(uri: str, fmt: str = "auto", field: str = "data.train") -> pa.Table:
    """Reads a CSV/TSV/JSONL/Parquet file from a local path or a pyarrow-supported URI."""
    if fmt == "auto":
        fmt = _SUFFIX_FORMATS.get(PurePosixPath(uri.split("?")[0]).suffix.lower(), "")
        if not fmt:
            raise DataError(
                f"{field}: cannot tell the format of {uri!r} from its suffix; set data.format "
                f"to one of csv, tsv, jsonl, parquet"
            )
    try:
        fs, path = data_file(uri, field)
        with fs.open_input_file(path) as f:
            if fmt == "parquet":
                return pq.read_table(f)
            if fmt == "jsonl":
                return pa_json.read_json(f)
            delimiter = "\t" if fmt == "tsv" else ","
            # GLUE-style TSVs are unquoted and contain bare quote characters.
            parse = pa_csv.ParseOptions(
                delimiter=delimiter, quote_char=False if fmt == "tsv" else '"'
            )
            return pa_csv.read_csv(f, parse_options=parse)
    except DataError:
        raise
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{field}: cannot read {uri!r} as {fmt}: {exc}") from None


def _read_hub(dataset_id: str, subset: str | None) -> dict[str, pa.Table]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "data.hub_dataset needs the `datasets` package: pip install 'finetune-sweeps[hub]'"
        ) from None
    try:
        loaded = datasets.load_dataset(dataset_id, subset)
    except Exception as exc:
        raise DataError(f"data.hub_dataset: cannot load {dataset_id!r}: {exc}") from None
    return {name: loaded[name].data.table for name in SPLITS if name in loaded}


def read_raw_splits(cfg: DataConfig) -> dict[str, pa.Table]:
    """The tables the config names, by split; splits it does not name are absent.

    An image folder becomes a table of `image` (absolute path or URI) and `label` (the
    class folder's name); a table's relative image paths become paths under its folder.
    """
    if cfg.builtin == "demo":
        return demo_splits()
    if cfg.builtin == "digits":
        from trainables.digits_data import digits_splits

        return digits_splits()
    if cfg.hub_dataset:
        return _read_hub(cfg.hub_dataset, cfg.hub_subset)
    assert cfg.train is not None
    tables = {}
    for name in SPLITS:
        uri = getattr(cfg, name)
        if not uri:
            continue
        field = f"data.{name}"
        try:
            folder = _is_folder(uri)
        except OSError as exc:  # object storage: no route, no bucket, no credentials
            raise DataError(f"{field}: cannot read {uri}: {exc}") from None
        if folder:
            from trainables.image_files import read_image_folder

            tables[name] = read_image_folder(uri, field)
            continue
        table = read_table(uri, cfg.format, field)
        if cfg.image_column:
            from trainables.image_files import anchor_paths

            table = anchor_paths(table, cfg.image_column, uri, field)
        tables[name] = table
    return tables


def _is_folder(uri: str) -> bool:
    """Whether `uri` (a local path or a pyarrow URI) is a folder."""
    try:
        filesystem, path = pa_fs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError):
        filesystem, path = pa_fs.LocalFileSystem(), uri
    try:
        return filesystem.get_file_info(path).type == pa_fs.FileType.Directory
    except OSError:
        return False


# --------------------------------------------------------------------------- labels & splits


def _column(table: pa.Table, column: str, field: str, split: str) -> list[Any]:
    if column not in table.column_names:
        raise DataError(
            f"{field}: column {column!r} not in the {split} split; its columns are "
            f"{table.column_names}"
        )
    values = table.column(column).to_pylist()
    if any(v is None for v in values):
        raise DataError(f"{field}: column {column!r} of the {split} split has empty values")
    return values


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits row indices into (kept, held out) with `fraction` of every label held out."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        n_held = round(len(rows) * fraction)
        held.append(rows[:n_held])
        kept.append(rows[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def build_dataset(
    cfg: DataConfig, tables: dict[str, pa.Table] | None = None, task: str = "text"
) -> Dataset:
    """Reads (or takes) the tables, maps columns and labels, and carves missing splits.

    Args:
        cfg: The data section.
        tables: Tables by split instead of reading `cfg`'s sources.
        task: `image` takes the image column (`image` unless `cfg.image_column` says
            otherwise) as inputs, as it is; any other task the text (and pair) column. The
            task's `trainables.labels.label_format` reads and checks the labels.

    Raises:
        DataError: naming the field, file, column or label that is wrong.
    """
    tables = tables if tables is not None else read_raw_splits(cfg)
    if task == "image" and not cfg.image_column:
        cfg = cfg.model_copy(update={"image_column": "image"})
    if cfg.builtin == "demo":
        cfg = cfg.model_copy(
            update={
                "text_column": "text",
                "label_column": "label",
                "text_pair_column": None,
                "label_names": cfg.label_names or DEMO_LABEL_NAMES,
            }
        )
    if "train" not in tables:
        raise DataError("data: the source has no train split")
    for split, table in tables.items():
        if table.num_rows == 0:
            raise DataError(f"data.{split}: the {split} split is empty ({where(cfg, split)})")
    labels_of = label_format(task)
    raw_labels = {split: labels_of.read(table, cfg, split) for split, table in tables.items()}
    names = labels_of.names(raw_labels["train"], cfg)

    splits: dict[str, LabeledSplit] = {}
    for split, table in tables.items():
        inputs: list[Any]
        if task == "image":
            assert cfg.image_column is not None
            inputs = _column(table, cfg.image_column, "data.image_column", split)
        else:
            inputs = [str(t) for t in _column(table, cfg.text_column, "data.text_column", split)]
        pairs = None
        if cfg.text_pair_column:
            raw = _column(table, cfg.text_pair_column, "data.text_pair_column", split)
            pairs = [str(t) for t in raw]
        labels = labels_of.encode(raw_labels[split], names, cfg, split)
        splits[split] = LabeledSplit(inputs, pairs, labels)

    carve = [("validation", cfg.validation_fraction), ("test", cfg.test_fraction)]
    original_rows = len(splits["train"])
    for split, fraction in carve:
        if split in splits or fraction == 0.0:
            continue
        # Fractions are of the original train split, not of what an earlier carve left.
        share = fraction * original_rows / len(splits["train"])
        strata = labels_of.strata(splits["train"].labels)
        kept, held = stratified_split(strata, share, cfg.split_seed)
        if len(held) == 0 or len(kept) == 0:
            raise DataError(
                f"data.{split}_fraction: {fraction} of {len(splits['train'])} train rows leaves an "
                f"empty split; give a data.{split} file or a larger fraction"
            )
        splits[split], splits["train"] = splits["train"].take(held), splits["train"].take(kept)
    return Dataset(splits=splits, label_names=names)


# --------------------------------------------------------------------------- tokens & batches


@dataclass(frozen=True)
class Ragged:
    """Rows of different lengths as one flat array and row offsets (Arrow's list layout):
    row `r` is `values[offsets[r]:offsets[r + 1]]`, a view. Memory-mapped from prepared tokens,
    a rank touches only the rows it batches."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((v for r in rows for v in r), dtype=np.int32, count=int(offsets[-1]))
        return cls(values, offsets)

    @classmethod
    def concat(cls, parts: Sequence[Ragged]) -> Ragged:
        """The rows of `parts`, in order, as one `Ragged`."""
        if len(parts) == 1:
            return parts[0]
        # Every part's offsets start at 0: shift each by the values before it.
        starts = np.cumsum([0] + [len(p.values) for p in parts[:-1]])
        shifted = [p.offsets[1:] + s for p, s in zip(parts, starts, strict=True)]
        offsets = [parts[0].offsets[:1], *shifted]
        return cls(np.concatenate([p.values for p in parts]), np.concatenate(offsets))

    def __getitem__(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row] : self.offsets[row + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[r] for r in range(len(self)))

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class TokenizedSplit:
    """Unpadded token ids per row (one ragged column per model input) and the labels."""

    features: dict[str, Ragged]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.features["input_ids"].lengths

    def __len__(self) -> int:
        return len(self.labels)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off for a block that only allocates acyclic objects.

    A tokenizer call builds a list of ints per row and input: the collections those allocations
    trigger scan them for cycles they cannot have, a third of a chunked tokenization's time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


#: Rows per tokenizer call: the tokenizer's Python lists of one chunk are all that a split's
#: tokenization holds beyond its flat arrays (a million rows at once held ~4 GB of lists).
TOKENIZE_CHUNK = 16_384


def tokenize_split(
    split: LabeledSplit, tokenizer: Any, max_length: int, chunk: int = TOKENIZE_CHUNK
) -> TokenizedSplit:
    """Tokenizes once, truncating to `max_length`; padding waits for the batch."""
    parts: dict[str, list[Ragged]] = {}
    for start in range(0, len(split), chunk):
        pairs = split.pairs[start : start + chunk] if split.pairs is not None else None
        with _collector_paused():
            encoded = tokenizer(
                split.inputs[start : start + chunk],
                pairs,
                truncation=True,
                max_length=max_length,
                padding=False,
            )
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            if name in encoded:
                parts.setdefault(name, []).append(Ragged.of(encoded[name]))
    return TokenizedSplit({n: Ragged.concat(p) for n, p in parts.items()}, split.labels)


def collate(split: TokenizedSplit, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pads `rows` to their longest row (dynamic padding) and stacks them as tensors."""
    ids = np.asarray(rows)
    offsets = split.features["input_ids"].offsets
    width = int((offsets[ids + 1] - offsets[ids]).max())
    batch = {}
    for name, column in split.features.items():
        fill = pad_id if name == "input_ids" else 0
        out = np.full((len(rows), width), fill, dtype=np.int64)
        for i, r in enumerate(rows):
            row = column[r]
            out[i, : len(row)] = row
        batch[name] = torch.from_numpy(out)
    batch["labels"] = torch.from_numpy(split.labels[ids])
    return batch


def length_group_rows(n: int, global_batch: int) -> int:
    """Rows in one mega-batch that `epoch_batches` sorts by length, for `n` rows.

    HF's length-grouped sampler's rule (`transformers.trainer_pt_utils.
    get_length_grouped_indices`), counted in global batches: 50 global batches, or as many as
    make 4 mega-batches when the data has fewer than 200 global batches, and at least one.
    A fixed 50 would sort a dataset of up to 50 global batches as one block, so its batches
    would hold the same rows in every epoch but for rows of equal length; with at least 4
    blocks, which rows share a batch changes from epoch to epoch (at the cost of more padding).
    """
    return max(min(n // (4 * global_batch), 50), 1) * global_batch


def epoch_batches(
    lengths: np.ndarray,
    batch_size: int,
    world_size: int,
    rank: int,
    seed: int,
    epoch: int,
    group_by_length: bool,
) -> list[list[int]]:
    """This rank's batches for one epoch: a pure function of (seed, epoch).

    A global batch holds `batch_size * world_size` rows and every rank gets an interleaved
    share, so ranks see similar lengths and finish their steps together. With
    `group_by_length`, rows are sorted by length inside shuffled mega-batches (see
    `length_group_rows` for their size), which cuts padding without making the order
    predictable. The last global batch is topped up with rows from the start so every rank has
    the same number of batches.

    The global batch that holds the longest row goes first (HF's length-grouped sampler does
    the same): a batch size that does not fit in memory fails at the first step, not an hour
    in, and the largest activations of a run's first epoch come before the optimizer's state
    exists (it is made at the first step), so that epoch's peak memory is lower.
    """
    n = len(lengths)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    global_size = batch_size * world_size
    if group_by_length:
        mega = length_group_rows(n, global_size)
        chunks = [order[i : i + mega] for i in range(0, n, mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    num_batches = math.ceil(n / global_size)
    shortfall = (-n) % world_size if n % global_size else 0
    order = np.concatenate([order, order[:shortfall]])
    batches = [order[i * global_size : (i + 1) * global_size] for i in range(num_batches)]
    if group_by_length:
        # Length-sorted batches would otherwise come longest-first in every mega-batch.
        shuffle = np.random.default_rng([seed, epoch, 1]).permutation(num_batches)
        batches = [batches[i] for i in shuffle]
    longest = int(np.argmax([lengths[b].max() for b in batches]))
    batches[0], batches[longest] = batches[longest], batches[0]
    return [b[rank::world_size].tolist() for b in batches]


def shard_rows(n: int, world_size: int, rank: int) -> list[int]:
    """Evaluation rows of this rank: disjoint shards that together cover all `n` rows once."""
    return list(range(rank, n, world_size))


def eval_batches(split: TokenizedSplit, rows: list[int], batch_size: int) -> list[list[int]]:
    """Rows sorted by length then cut into batches: order does not matter when evaluating."""
    lengths = split.lengths
    ordered = sorted(rows, key=lambda r: lengths[r])
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
