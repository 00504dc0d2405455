"""The regression and multi-label metrics against scipy's and scikit-learn's on fixed inputs,
and their reduction over ranks: pooled exactly, never a mean of per-rank figures."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from tests import gloo_ranks
from trainables.metrics import (
    MultiLabelMetrics,
    RegressionMetrics,
    average_ranks,
    multi_label_scores,
    regression_scores,
)

# Fixed inputs with ties on both sides (Spearman's average ranks matter).
PREDICTED = np.array([0.1, 0.4, 0.4, 1.2, 2.5, 2.5, 2.5, 3.9, 4.4, 0.3, 1.1, 3.0])
TRUE = np.array([0.0, 0.8, 0.2, 1.0, 2.0, 3.0, 2.0, 4.0, 5.0, 1.0, 1.0, 2.8])


def test_average_ranks_are_scipys_rankdata() -> None:
    np.testing.assert_allclose(average_ranks(PREDICTED), stats.rankdata(PREDICTED))


def test_regression_scores_match_scipy_and_numpy() -> None:
    scores = regression_scores(PREDICTED[:, None], TRUE[:, None])
    mse = float(np.mean((PREDICTED - TRUE) ** 2))
    assert math.isclose(scores["mse"], mse, rel_tol=1e-12)
    assert math.isclose(scores["rmse"], math.sqrt(mse), rel_tol=1e-12)
    assert math.isclose(scores["pearson"], stats.pearsonr(PREDICTED, TRUE)[0], rel_tol=1e-12)
    assert math.isclose(scores["spearman"], stats.spearmanr(PREDICTED, TRUE)[0], rel_tol=1e-12)


def test_pooled_correlation_is_not_the_mean_of_two_shards() -> None:
    # The wrong reduction (each rank's correlation, averaged) gives another figure on these
    # shards, so a test that compares with the pooled one can tell them apart.
    halves = [slice(0, 6), slice(6, 12)]
    pooled = regression_scores(PREDICTED[:, None], TRUE[:, None])
    for name, reference in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        per_shard = [reference(PREDICTED[h], TRUE[h])[0] for h in halves]
        assert abs(float(np.mean(per_shard)) - pooled[name]) > 0.01, name


# Multi-hot truth and probabilities of 8 rows x 4 labels; label 3 is never true nor predicted
# at 0.5 (F1 0 in scikit-learn's macro mean).
Y_TRUE = np.array(
    [
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
        [0, 1, 1, 0],
        [1, 1, 1, 0],
    ]
)
PROBS = np.array(
    [
        [0.9, 0.2, 0.1, 0.1],
        [0.8, 0.3, 0.2, 0.2],
        [0.4, 0.7, 0.1, 0.3],
        [0.2, 0.1, 0.6, 0.1],
        [0.7, 0.6, 0.45, 0.2],
        [0.1, 0.1, 0.1, 0.1],
        [0.3, 0.8, 0.9, 0.4],
        [0.9, 0.9, 0.9, 0.3],
    ]
)


def multi_label_metrics(probs: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    state = MultiLabelMetrics(truth.shape[1], threshold, torch.device("cpu"))
    logits = torch.logit(torch.tensor(probs, dtype=torch.float64)).float()
    state.add(logits, torch.tensor(truth, dtype=torch.float32))
    return state.result("val_")


@pytest.mark.parametrize("threshold", [0.5, 0.35])
def test_multi_label_metrics_match_scikit_learn(threshold: float) -> None:
    got = multi_label_metrics(PROBS, Y_TRUE, threshold)
    predicted = (threshold <= PROBS).astype(int)
    assert math.isclose(got["val_f1_micro"], f1_score(Y_TRUE, predicted, average="micro"))
    expected_macro = f1_score(Y_TRUE, predicted, average="macro", zero_division=0)
    assert math.isclose(got["val_f1_macro"], expected_macro)
    assert math.isclose(got["val_subset_accuracy"], accuracy_score(Y_TRUE, predicted))


def test_micro_and_macro_f1_differ_on_these_inputs() -> None:
    # A mix-up of the two averages (or dropping the all-zero label from the macro mean) fails
    # the comparison above: here they are different numbers.
    predicted = (PROBS >= 0.5).astype(int)
    micro = f1_score(Y_TRUE, predicted, average="micro")
    macro = f1_score(Y_TRUE, predicted, average="macro", zero_division=0)
    present_only = f1_score(Y_TRUE, predicted, average="macro", labels=[0, 1, 2])
    assert len({round(micro, 6), round(macro, 6), round(present_only, 6)}) == 3


def test_multi_label_scores_of_summed_counts_equal_the_pooled_ones() -> None:
    # Per-label counts of two shards, summed, score the whole; the mean of shard F1s does not.
    predicted = PROBS >= 0.5
    truth = Y_TRUE.astype(bool)

    def counts(rows: slice) -> tuple[np.ndarray, ...]:
        p, t = predicted[rows], truth[rows]
        return (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)

    a, b = counts(slice(0, 2)), counts(slice(2, 8))
    exact = float((predicted == truth).all(1).sum())
    summed = multi_label_scores(a[0] + b[0], a[1] + b[1], a[2] + b[2], exact, 8)
    assert math.isclose(
        summed["f1_micro"], f1_score(Y_TRUE, predicted.astype(int), average="micro")
    )
    shard_micro = [
        f1_score(Y_TRUE[s], predicted[s].astype(int), average="micro")
        for s in (slice(0, 2), slice(2, 8))
    ]
    assert abs(float(np.mean(shard_micro)) - summed["f1_micro"]) > 0.01


# --------------------------------------------------------------------------- over 2 ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, port: int, kind: str, queue: mp.Queue) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # Uneven shards (5 and 7 rows), as the loop's evaluation shards are.
        rows = slice(0, 5) if rank == 0 else slice(5, 12)
        queue.put((rank, _metrics(kind, rows, in_batches_of=3)))
    finally:
        dist.destroy_process_group()


def _metrics(kind: str, rows: slice, in_batches_of: int) -> dict[str, float]:
    device = torch.device("cpu")
    if kind == "regression":
        state: RegressionMetrics | MultiLabelMetrics = RegressionMetrics(1, device)
        logits, labels = torch.tensor(PREDICTED[rows])[:, None], torch.tensor(TRUE[rows])[:, None]
    else:
        truth = np.vstack([Y_TRUE, Y_TRUE[::-1]])[rows]
        probs = np.vstack([PROBS, PROBS[::-1] * 0.9])[rows]
        state = MultiLabelMetrics(4, 0.5, device)
        logits = torch.logit(torch.tensor(probs, dtype=torch.float64)).float()
        labels = torch.tensor(truth, dtype=torch.float32)
    for start in range(0, len(logits), in_batches_of):
        state.add(logits[start : start + in_batches_of], labels[start : start + in_batches_of])
    return state.result("val_")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["regression", "multi_label"])
def test_two_gloo_ranks_reduce_to_the_one_process_metrics(kind: str) -> None:
    ctx = gloo_ranks.context()
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, port, kind, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=100) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    whole = _metrics(kind, slice(0, 12), in_batches_of=4)
    assert results[0] == results[1]  # every rank holds the same figures
    for key, value in whole.items():
        assert math.isclose(results[0][key], value, rel_tol=1e-9, abs_tol=1e-12), key
