"""Padded tokens an epoch of `bench/loop_throughput.py`'s SST-2 sample, by how rows are batched.

The loop's own batch plan (`trainables.data.epoch_batches`) over `--epochs` epochs of the
sample's token lengths (the loop's tokenization), batch 32, one rank: length-grouped as
shipped (sort windows of HF's size, `trainables.data.length_group_rows`), length-grouped with
a fixed window of `--old-window` batches (the rule before issue 26), and not grouped. Prints
the mean and spread of padded tokens an epoch, and the share of the pairs of rows that share a
batch in epoch 0 that share one in epoch 1 too. No training: seconds on one core.

    PYTHONPATH=$PWD .venv/bin/python bench/grouping_padding.py [--rows 1024] [--epochs 200]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

import trainables.data.batches
from bench.loop_throughput import BATCH_SIZE, ROWS, SEED, loop_job, sample_sst2
from trainables.config import parse_config
from trainables.data import epoch_batches
from trainables.tasks import prepare_task

# The workplace's shared copy (`../shared/data`): benchmarks only, never the product.
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def padded(lengths: np.ndarray, plan: list[list[int]]) -> int:
    """Tokens of a plan's batches, each padded to its longest row."""
    return sum(len(b) * int(lengths[b].max()) for b in plan)


def kept_pairs(first: list[list[int]], second: list[list[int]], n: int) -> float:
    """The share of the pairs of rows that share a batch in `first` that share one in `second`
    too (how much of an epoch's batching the next epoch repeats)."""
    batch_of = np.empty(n, dtype=np.int64)
    for i, rows in enumerate(second):
        batch_of[rows] = i
    pairs = kept = 0
    for rows in first:
        counts = np.unique(batch_of[rows], return_counts=True)[1]
        pairs += len(rows) * (len(rows) - 1) // 2
        kept += int((counts * (counts - 1) // 2).sum())
    return kept / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--old-window", type=int, default=50, help="batches, the old rule")
    parser.add_argument("--data", default=str(SST2))
    args = parser.parse_args()
    train, dev = sample_sst2(Path(args.data), args.rows, Path(tempfile.mkdtemp()))
    task = prepare_task(parse_config(loop_job(train, dev, True, 1, 8)))
    lengths = task.lengths("train")
    assert lengths is not None
    print(f"{len(lengths)} rows, batch {BATCH_SIZE}, {int(lengths.sum())} real tokens")
    old = mock.patch.object(
        trainables.data.batches, "length_group_rows", lambda n, batch: args.old_window * batch
    )
    runs: list[tuple[str, bool, Any]] = [
        ("grouped, HF's window (shipped)", True, None),
        (f"grouped, {args.old_window}-batch window (old)", True, old),
        ("not grouped", False, None),
    ]
    for name, grouped, window in runs:
        with window or contextlib.nullcontext():
            plans = [
                epoch_batches(lengths, BATCH_SIZE, 1, 0, SEED, e, grouped)
                for e in range(args.epochs)
            ]
        tokens = [padded(lengths, p) for p in plans]
        mean = statistics.mean(tokens)
        spread = statistics.pstdev(tokens) / mean
        print(
            f"{name:34s} {mean:7.0f} padded tokens an epoch (std {spread:.1%} over "
            f"{args.epochs} epochs), padding {mean / lengths.sum() - 1:.1%} of real tokens, "
            f"{kept_pairs(plans[0], plans[1], len(lengths)):.1%} of epoch 0's batch-mate pairs "
            f"again batch-mates in epoch 1"
        )


if __name__ == "__main__":
    main()
