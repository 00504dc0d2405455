"""Batch plans: `epoch_batches` is the whole batch plan of one epoch for one rank, a pure
function of (seed, epoch), which is what lets a restarted worker skip exactly the batches it
already did; length grouping by HF's window (`length_group_rows`); evaluation shards and
batches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trainables.data.tokens import TokenizedSplit


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


def eval_batches(
    split: TokenizedSplit | Sequence[int] | np.ndarray, rows: list[int], batch_size: int
) -> list[list[int]]:
    """Rows sorted by length (a split's, or any per-row lengths) then cut into batches: order
    does not matter when evaluating, and the least padding is fastest."""
    lengths = split.lengths if isinstance(split, TokenizedSplit) else split
    ordered = sorted(rows, key=lambda r: lengths[r])
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
