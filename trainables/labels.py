"""How each task reads its labels from a table: which columns, what a valid value is, what the
label names are, and what array the batches carry.

`label_format(task)` is the seam `trainables.data.build_dataset` reads labels through:

- `ClassLabels` (text, image): one class per row, a name or (with `data.label_names`) an id;
  an int64 array of ids.
- `RegressionLabels`: a number per row in `label_column`, or one per column of
  `label_columns`; a float32 array [rows, targets].
- `MultiLabels`: a set of classes per row (a list, a JSON list in a string, or a string split
  by `data.label_separator`); a float32 multi-hot array [rows, classes].

A bad value raises `DataError` naming the field, the file (or split), the data row (counted
from 1, the header not counted) and the value, before anything is written or any trial starts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from trainables.config import DataConfig
from trainables.errors import DataError


def where(cfg: DataConfig, split: str) -> str:
    """The file a split was read from (or the split's name, for built-in and Hub data)."""
    uri = getattr(cfg, split, None) if split in ("train", "validation", "test") else None
    if cfg.train and uri:
        return str(uri)
    source = cfg.hub_dataset or cfg.builtin
    return f"the {split} split" + (f" of {source}" if source else "")


def column_values(table: pa.Table, column: str, field: str, split: str, source: str) -> list[Any]:
    """A column as Python values; raises naming the file and data row of an empty value."""
    if column not in table.column_names:
        raise DataError(
            f"{field}: column {column!r} not in {source} ({split} split); its columns are "
            f"{table.column_names}"
        )
    values = table.column(column).to_pylist()
    for row, value in enumerate(values):
        if value is None:
            raise DataError(f"{field}: {source}, data row {row + 1}: column {column!r} is empty")
    return values


class LabelFormat(Protocol):
    """How a task's labels are read from a split's table."""

    def read(self, table: pa.Table, cfg: DataConfig, split: str) -> list[Any]:
        """The raw label of every row (checked for presence, not yet for validity)."""
        ...

    def names(self, train: list[Any], cfg: DataConfig) -> tuple[str, ...]:
        """The label names (classes, or regression targets) from the train split's labels."""
        ...

    def encode(
        self, values: list[Any], names: tuple[str, ...], cfg: DataConfig, split: str
    ) -> np.ndarray:
        """The array batches carry; raises `DataError` at the first invalid value."""
        ...

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """One int per row that a carved split keeps in proportion (all equal: plain random)."""
        ...


class ClassLabels:
    """One class per row: a name, or an id into `data.label_names`."""

    def read(self, table: pa.Table, cfg: DataConfig, split: str) -> list[Any]:
        """The label column."""
        return column_values(table, cfg.label_column, "data.label_column", split, where(cfg, split))

    def names(self, train: list[Any], cfg: DataConfig) -> tuple[str, ...]:
        """`data.label_names`, else the train split's distinct labels, sorted."""
        distinct = sorted(set(train), key=lambda v: (isinstance(v, str), v))
        return at_least_two(cfg.label_names or tuple(str(v) for v in distinct), "has")

    def encode(
        self, values: list[Any], names: tuple[str, ...], cfg: DataConfig, split: str
    ) -> np.ndarray:
        """Label ids (int64)."""
        index = {name: i for i, name in enumerate(names)}
        ids = np.empty(len(values), dtype=np.int64)
        for row, value in enumerate(values):
            key = str(value)
            if key in index:
                ids[row] = index[key]
            elif cfg.label_names and isinstance(value, int) and 0 <= value < len(names):
                ids[row] = value
            else:
                what = f"label {value!r} in the {split} split (row {row})"
                # A cell naming several labels ("3,27") is a multi-label job's: say so.
                hint = "; job.task is one label per row here (multi_label takes several)"
                raise not_among(cfg, what, names, str(list(names)) + hint)
        return ids

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """The class ids: carved splits keep every class's share."""
        return labels


class RegressionLabels:
    """A number per row, in `label_column` or in each of `label_columns`."""

    @staticmethod
    def columns(cfg: DataConfig) -> tuple[str, ...]:
        """The target columns."""
        return cfg.label_columns or (cfg.label_column,)

    def read(self, table: pa.Table, cfg: DataConfig, split: str) -> list[Any]:
        """Per row, a tuple of its targets."""
        field = "data.label_columns" if cfg.label_columns else "data.label_column"
        source = where(cfg, split)
        columns = [column_values(table, c, field, split, source) for c in self.columns(cfg)]
        return list(zip(*columns, strict=True))

    def names(self, train: list[Any], cfg: DataConfig) -> tuple[str, ...]:
        """The target columns' names (`data.label_names` may rename them)."""
        columns = self.columns(cfg)
        if cfg.label_names and len(cfg.label_names) != len(columns):
            raise DataError(
                f"data.label_names: {len(cfg.label_names)} names for {len(columns)} regression "
                f"target column(s) {list(columns)}"
            )
        return cfg.label_names or columns

    def encode(
        self, values: list[Any], names: tuple[str, ...], cfg: DataConfig, split: str
    ) -> np.ndarray:
        """float32 [rows, targets]."""
        columns = self.columns(cfg)
        field = "data.label_columns" if cfg.label_columns else "data.label_column"
        out = np.empty((len(values), len(columns)), dtype=np.float32)
        for row, targets in enumerate(values):
            for j, value in enumerate(targets):
                number = _number(value)
                if number is None:
                    raise DataError(
                        f"{field}: {where(cfg, split)}, data row {row + 1}, column "
                        f"{columns[j]!r}: {value!r} is not a finite number (task: regression)"
                    )
                out[row, j] = number
        return out

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """None: a carved split is a seeded random sample."""
        return np.zeros(len(labels), dtype=np.int64)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class MultiLabels:
    """A set of classes per row: a list, a JSON list in a string, or a string split by
    `data.label_separator`; names, or ids into `data.label_names`."""

    def read(self, table: pa.Table, cfg: DataConfig, split: str) -> list[Any]:
        """Per row, its list of labels as written."""
        values = column_values(
            table, cfg.label_column, "data.label_column", split, where(cfg, split)
        )
        return [self._items(v, cfg, split, row) for row, v in enumerate(values)]

    def _items(self, value: Any, cfg: DataConfig, split: str, row: int) -> list[Any]:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return [int(value)]
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, list):
                    raise DataError(
                        f"data.label_column: {where(cfg, split)}, data row {row + 1}: {value!r} "
                        f"starts like a JSON list but is not one"
                    )
                return parsed
            return [p.strip() for p in text.split(cfg.label_separator) if p.strip()]
        raise DataError(
            f"data.label_column: {where(cfg, split)}, data row {row + 1}: {value!r} is not a "
            f"list of labels (task: multi_label)"
        )

    def names(self, train: list[Any], cfg: DataConfig) -> tuple[str, ...]:
        """`data.label_names`, else every label the train split names, sorted (numbers as
        numbers)."""
        if cfg.label_names:
            return cfg.label_names
        distinct = {str(item) for items in train for item in items}
        return at_least_two(tuple(sorted(distinct, key=_numbers_first)), "names")

    def encode(
        self, values: list[Any], names: tuple[str, ...], cfg: DataConfig, split: str
    ) -> np.ndarray:
        """float32 multi-hot [rows, classes]."""
        index = {name: i for i, name in enumerate(names)}
        out = np.zeros((len(values), len(names)), dtype=np.float32)
        for row, items in enumerate(values):
            for item in items:
                key = str(item)
                if key in index:
                    out[row, index[key]] = 1.0
                    continue
                as_id = _as_int(key) if cfg.label_names else None
                if as_id is not None and 0 <= as_id < len(names):
                    out[row, as_id] = 1.0
                    continue
                what = f"{where(cfg, split)}, data row {row + 1}: label {item!r}"
                raise not_among(cfg, what, names, _shown(names))
        return out

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """None: a carved split is a seeded random sample."""
        return np.zeros(len(labels), dtype=np.int64)


def _as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _numbers_first(name: str) -> tuple[int, int, str]:
    """Sort key: numeric names in numeric order ("3" before "27"), then the rest."""
    number = _as_int(name)
    return (0, number, "") if number is not None else (1, 0, name)


def _shown(names: Sequence[str], most: int = 30) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")


_FORMATS: dict[str, LabelFormat] = {
    "text": ClassLabels(),
    "image": ClassLabels(),
    "regression": RegressionLabels(),
    "multi_label": MultiLabels(),
}


def label_format(task: str) -> LabelFormat:
    """How `task` reads its labels (single-label classes for a task that registers none)."""
    return _FORMATS.get(task, _FORMATS["text"])


def at_least_two(names: tuple[str, ...], verb: str) -> tuple[str, ...]:
    """`names`, when there are 2 or more (what any classifier needs).

    Raises:
        DataError: naming `data.label_column` and the labels the train split `verb` ("has").
    """
    if len(names) < 2:
        raise DataError(
            f"data.label_column: the train split {verb} fewer than 2 labels: {list(names)}"
        )
    return names


def not_among(cfg: DataConfig, what: str, names: tuple[str, ...], shown: str) -> DataError:
    """The error for a label (`what`: where it is and its value) that is not among `names`
    (`shown` as the message lists them), naming where the names came from."""
    origin = "data.label_names" if cfg.label_names else "the train split"
    return DataError(
        f"data.label_column: {what} is not among the {len(names)} labels of {origin}: {shown}"
    )
