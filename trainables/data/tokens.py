"""Tokens: a split tokenized once without padding (`TokenizedSplit`, rows as `Ragged` arrays),
and batches padded to their own longest row (`collate`)."""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainables.data.splits import LabeledSplit


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
