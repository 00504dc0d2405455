from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

from trainables.config import DataConfig
from trainables.data import (
    build_dataset,
    collate,
    epoch_batches,
    read_table,
    shard_rows,
    stratified_split,
    tokenize_split,
)
from trainables.demo_data import demo_splits
from trainables.errors import DataError
from trainables.models import load_tokenizer

TABLE = pa.table({"t": ["a b", "c", "d e f", "g"], "y": ["x", "z", "x", "z"]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_reads_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        pa_csv.write_csv(TABLE, path)
    elif suffix == ".tsv":
        path.write_text(
            "t\ty\n"
            + "".join(f"{t}\t{y}\n" for t, y in zip(*TABLE.to_pydict().values(), strict=True))
        )
    elif suffix == ".jsonl":
        path.write_text(
            "".join(f'{{"t": "{r["t"]}", "y": "{r["y"]}"}}\n' for r in TABLE.to_pylist())
        )
    else:
        pq.write_table(TABLE, path)
    assert read_table(str(path)).select(["t", "y"]).to_pylist() == TABLE.to_pylist()
    assert pa_json  # the reader module is importable


def test_tsv_keeps_bare_quotes(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("sentence\tlabel\nit 's a \"gem\t1\n")
    assert read_table(str(path)).column("sentence").to_pylist() == ["it 's a \"gem"]


def test_unknown_suffix_and_missing_file_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.format"):
        read_table(str(tmp_path / "x.txt"))
    with pytest.raises(DataError, match="data.validation: file not found"):
        read_table(str(tmp_path / "x.csv"), field="data.validation")


def _cfg(**kw: object) -> DataConfig:
    return DataConfig.model_validate(
        {"train": "unused.csv", "text_column": "t", "label_column": "y", **kw}
    )


def test_labels_are_discovered_sorted_and_mapped() -> None:
    ds = build_dataset(_cfg(validation="v.csv"), {"train": TABLE, "validation": TABLE})
    assert ds.label_names == ("x", "z")
    assert ds.splits["validation"].labels.tolist() == [0, 1, 0, 1]


def test_integer_labels_with_given_names() -> None:
    table = pa.table({"t": ["a", "b", "c"], "y": [0, 1, 1]})
    ds = build_dataset(_cfg(label_names=["neg", "pos"], validation_fraction=0.3), {"train": table})
    assert ds.label_names == ("neg", "pos")


def test_missing_column_names_column_and_alternatives() -> None:
    with pytest.raises(DataError, match=r"data.text_column: column 'text'.*\['t', 'y'\]"):
        build_dataset(_cfg(text_column="text"), {"train": TABLE})


def test_validation_label_never_seen_in_train() -> None:
    val = pa.table({"t": ["q"], "y": ["w"]})
    with pytest.raises(DataError, match="label 'w' in the validation split"):
        build_dataset(_cfg(validation="v.csv"), {"train": TABLE, "validation": val})


def test_empty_split_is_named() -> None:
    with pytest.raises(DataError, match="data.validation: the validation split is empty"):
        build_dataset(_cfg(validation="v.csv"), {"train": TABLE, "validation": TABLE.slice(0, 0)})


def test_one_label_only_is_rejected() -> None:
    with pytest.raises(DataError, match="fewer than 2 labels"):
        build_dataset(_cfg(), {"train": pa.table({"t": ["a", "b"], "y": ["x", "x"]})})


def test_stratified_split_is_seeded_and_keeps_proportions() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    kept, held = stratified_split(labels, 0.25, seed=3)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(100))
    assert (labels[held] == 0).sum() == 20 and (labels[held] == 1).sum() == 5
    again = stratified_split(labels, 0.25, seed=3)
    assert np.array_equal(held, again[1])
    assert not np.array_equal(held, stratified_split(labels, 0.25, seed=4)[1])


def test_carved_splits_are_disjoint_and_complete() -> None:
    table = pa.table({"t": [f"r{i}" for i in range(100)], "y": ["a", "b"] * 50})
    ds = build_dataset(_cfg(validation_fraction=0.2, test_fraction=0.1), {"train": table})
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sizes == {"train": 70, "validation": 20, "test": 10}
    seen = [t for s in ds.splits.values() for t in s.inputs]
    assert sorted(seen) == sorted(table.column("t").to_pylist())


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("grouped", [False, True])
def test_epoch_batches_cover_every_row_with_equal_batch_counts(world: int, grouped: bool) -> None:
    lengths = np.random.default_rng(0).integers(1, 50, size=103)
    plans = [
        epoch_batches(lengths, 4, world, r, seed=1, epoch=0, group_by_length=grouped)
        for r in range(world)
    ]
    assert len({len(p) for p in plans}) == 1
    assert all(len(batch) >= 1 for plan in plans for batch in plan)
    rows = [row for plan in plans for batch in plan for row in batch]
    assert set(rows) == set(range(103))
    assert len(rows) - 103 < world  # only the last batch is topped up, by fewer than `world`
    again = epoch_batches(lengths, 4, world, 0, seed=1, epoch=0, group_by_length=grouped)
    assert again == plans[0]
    assert epoch_batches(lengths, 4, world, 0, seed=1, epoch=1, group_by_length=grouped) != again


def test_length_grouping_cuts_padding() -> None:
    lengths = np.random.default_rng(0).integers(2, 60, size=2000)

    def padded(grouped: bool) -> int:
        plan = epoch_batches(lengths, 32, 1, 0, seed=0, epoch=0, group_by_length=grouped)
        return sum(len(b) * lengths[b].max() for b in plan)

    assert padded(True) < 0.7 * padded(False)


def test_grouped_batches_of_a_small_dataset_change_between_epochs() -> None:
    # 32 batches of distinct lengths: sorted as one block, every epoch would have the same
    # batches (in another order); sorted in 4 blocks of 8 batches, as HF sorts them, the rows
    # that share a batch change.
    lengths = np.random.default_rng(0).permutation(1024) + 1

    def batches(epoch: int) -> set[frozenset[int]]:
        plan = epoch_batches(lengths, 32, 1, 0, seed=0, epoch=epoch, group_by_length=True)
        return {frozenset(b) for b in plan}

    assert len(batches(0) & batches(1)) < 4


@pytest.mark.parametrize("epoch", [0, 1, 2])
@pytest.mark.parametrize("grouped", [False, True])
def test_every_epoch_starts_with_the_batch_holding_the_longest_row(
    grouped: bool, epoch: int
) -> None:
    lengths = np.random.default_rng(epoch).integers(1, 50, size=203)
    lengths[137] = 60  # the one longest row, somewhere in the middle
    world = 2
    first = [
        epoch_batches(lengths, 4, world, r, seed=5, epoch=epoch, group_by_length=grouped)[0]
        for r in range(world)
    ]
    assert 137 in first[0] + first[1]


def test_eval_shards_partition_rows() -> None:
    shards = [shard_rows(11, 3, r) for r in range(3)]
    assert sorted(row for shard in shards for row in shard) == list(range(11))


def test_tokenize_and_collate_pairs_with_dynamic_padding() -> None:
    tokenizer = load_tokenizer("embedded:all-MiniLM-L6-v2")
    table = pa.table({"q": ["a cat", "is it"], "p": ["on a mat here", "yes"], "y": [1, 0]})
    cfg = _cfg(text_column="q", text_pair_column="p", label_column="y", validation_fraction=0.5)
    ds = build_dataset(cfg, {"train": table, "validation": table})
    split = tokenize_split(ds.splits["train"], tokenizer, max_length=16)
    batch = collate(split, [0, 1], tokenizer.pad_token_id)
    width = max(len(ids) for ids in split.features["input_ids"])
    assert batch["input_ids"].shape == (2, width)
    assert batch["token_type_ids"].max() == 1  # the pair is marked as the second segment
    assert batch["attention_mask"].sum() == sum(len(ids) for ids in split.features["input_ids"])
    assert batch["labels"].tolist() == ds.splits["train"].labels.tolist()


def test_tokenize_in_chunks_gives_the_tokenizers_own_rows() -> None:
    tokenizer = load_tokenizer("embedded:all-MiniLM-L6-v2")
    texts = [f"row {i} " + "word " * (i % 5) for i in range(7)]
    pairs = [f"pair {i}" for i in range(7)]
    table = pa.table({"q": texts, "p": pairs, "y": [i % 2 for i in range(7)]})
    cfg = _cfg(text_column="q", text_pair_column="p", label_column="y")
    ds = build_dataset(cfg, {"train": table, "validation": table})
    # 7 rows in chunks of 3: two full chunks and a short one, joined back in order.
    split = tokenize_split(ds.splits["train"], tokenizer, max_length=8, chunk=3)
    expected = tokenizer(texts, pairs, truncation=True, max_length=8)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert [row.tolist() for row in split.features[name]] == expected[name]


def test_demo_task_is_deterministic_balanced_and_disjoint() -> None:
    a, b = demo_splits(), demo_splits()
    assert a["train"].equals(b["train"])
    labels = a["train"].column("label").to_pylist()
    assert 0.45 < labels.count("positive") / len(labels) < 0.55
    train_texts = set(a["train"].column("text").to_pylist())
    val_texts = a["validation"].column("text").to_pylist()
    assert sum(t in train_texts for t in val_texts) / len(val_texts) < 0.05
