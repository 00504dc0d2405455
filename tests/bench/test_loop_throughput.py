"""`bench/loop_throughput.py` stays like for like: both sides sort rows by length over windows
of the same size, and its token counter counts what a padded batch holds.

Each window is observed in what the code under test does, not read from a formula: HF's in the
order transformers' own `LengthGroupedSampler` yields (what `Trainer` builds for
`train_sampling_strategy="group_by_length"`), the loop's in the batches `epoch_batches` plans.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler

from bench.loop_throughput import BATCH_SIZE, ROWS, SEED, token_counts
from trainables.data import Ragged, TokenizedSplit, collate, epoch_batches
from trainables.models import load_tokenizer

# The bench's default sample, and the larger one RESULTS.md reports (200 batches: HF's cap).
BENCH_ROWS = [ROWS, 6400]


def distinct_lengths(n: int) -> np.ndarray:
    """Every row a length of its own (a shuffled 1..n), so a sort's windows can be seen."""
    return np.random.default_rng(7).permutation(n) + 1


def hf_window(n: int) -> int:
    """Rows in HF's first sorted window: its order's first run of falling lengths.

    Every window comes sorted longest first, and the next window starts with its own longest
    row, which is longer than the first window's shortest (with distinct lengths, windows of
    more than a few rows, and this seed). HF moves the longest row of all to the first place,
    which keeps the first run falling.
    """
    lengths = distinct_lengths(n).tolist()
    sampler = LengthGroupedSampler(
        BATCH_SIZE, lengths=lengths, generator=torch.Generator().manual_seed(SEED)
    )
    order = [lengths[i] for i in sampler]
    run = 1
    while run < n and order[run] < order[run - 1]:
        run += 1
    return run


def loop_window(n: int) -> int:
    """Rows in each of the loop's sorted windows: `n` over how many windows it sorted.

    A window's batches are consecutive slices of its sorted rows, so their length ranges never
    overlap; batches of different windows overlap. The most batch ranges that share a length is
    the number of windows (the loop shuffles its batches, so runs cannot be read off its order).
    """
    lengths = distinct_lengths(n)
    plan = epoch_batches(lengths, BATCH_SIZE, 1, 0, SEED, 0, group_by_length=True)
    ranges = [(int(lengths[b].min()), int(lengths[b].max())) for b in plan]
    windows = max(sum(lo <= x <= hi for lo, hi in ranges) for x in range(1, n + 1))
    return -(-n // windows)


@pytest.mark.parametrize("rows", BENCH_ROWS)
def test_hf_and_the_loop_sort_windows_of_the_same_size(rows: int) -> None:
    assert loop_window(rows) == hf_window(rows)


def test_hf_window_is_what_its_docs_say_positive_control() -> None:
    # A window that is not the loop's must be seen as such: HF's for 1,024 rows in batches of
    # 32 is min(1024 // 128, 50) = 8 batches (transformers' docstring rule), not 32.
    assert hf_window(1024) == 8 * BATCH_SIZE


def test_token_counter_on_hf_collated_batch() -> None:
    tokenizer = load_tokenizer("embedded:all-MiniLM-L6-v2")
    sizes = [3, 5, 10]
    features = [{"input_ids": list(range(100, 100 + k)), "attention_mask": [1] * k} for k in sizes]
    batch = DataCollatorWithPadding(tokenizer)(features)
    # By hand: 18 real tokens in a 3 x 10 batch, 12 of its 30 places padding.
    assert token_counts(batch) == (18, 30)


def test_token_counter_on_the_loops_collated_batch() -> None:
    sizes = [4, 1, 7, 2]
    features = {
        "input_ids": Ragged.of([list(range(100, 100 + k)) for k in sizes]),
        "attention_mask": Ragged.of([[1] * k for k in sizes]),
    }
    split = TokenizedSplit(features, np.zeros(len(sizes), dtype=np.int64))
    batch = collate(split, [0, 1, 2, 3], pad_id=0)
    # By hand: 14 real tokens in a 4 x 7 batch.
    assert token_counts(batch) == (14, 28)
