"""Labels and splits: columns mapped to inputs / text pairs / labels (through the task's label
format, `trainables.labels`), labels as ids or targets, missing splits carved from train
(stratified, seeded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from trainables.config import DataConfig
from trainables.data.read import read_raw_splits
from trainables.demo_data import LABEL_NAMES as DEMO_LABEL_NAMES
from trainables.errors import DataError
from trainables.labels import label_format, where


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
