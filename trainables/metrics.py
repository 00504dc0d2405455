"""Evaluation across DDP ranks that equals evaluation of the whole split in one process.

Every rank evaluates a disjoint shard (no padding rows, unlike DistributedSampler) into its
task's `MetricState`, which reduces over ranks only what makes the metric exact:

- single-label classification: the loss sum, row count and confusion matrix are summed;
  accuracy and macro F1 come from the summed matrix.
- multi-label: the loss sum, row and exact-match counts and per-label TP / FP / FN are summed;
  micro / macro F1 and subset accuracy come from the sums.
- regression: every rank's predictions and targets are all-gathered; MSE, Pearson and Spearman
  are computed over all of them (a correlation is not a sum: the mean of per-rank correlations
  is not the split's correlation).

So no metric is rank 0's shard alone, nor an average of per-rank figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks ((0, 1) outside a process group)."""
    if _distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sums a tensor over all ranks (identity outside a process group)."""
    if _distributed():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_rows(values: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `values` [rows, ...] concatenated in rank order (identity outside
    a process group). Ranks may hold different numbers of rows: each pads to the largest."""
    if not _distributed():
        return values
    world = dist.get_world_size()
    count = torch.tensor([values.shape[0]], dtype=torch.int64, device=values.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = values.new_zeros((max(sizes), *values.shape[1:]))
    padded[: values.shape[0]] = values
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


class MetricState(Protocol):
    """One evaluation's running statistics on one rank."""

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Takes one batch's logits (float) and labels."""
        ...

    def result(self, prefix: str) -> dict[str, float]:
        """The metrics over every rank's batches (a collective: every rank calls it), keys
        prefixed (`val_`, `test_`)."""
        ...


@runtime_checkable
class ModelMetricState(MetricState, Protocol):
    """A `MetricState` that also scores the model itself, beyond its logits: a causal LM's
    greedy generations on a few rows."""

    def add_model(self, model: torch.nn.Module, prefix: str) -> None:
        """Scores `model` (unwrapped, in eval mode) on this rank's share of the split whose
        metrics are prefixed `prefix`; `result` reduces it over ranks with the rest."""
        ...


# --------------------------------------------------------------------- single-label classes


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 from a confusion matrix [true, predicted].

    Classes absent from both truth and predictions are left out of the mean.
    """
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not present.any():
        return 0.0
    return float(np.mean(2 * tp[present] / denom[present]))


def summarize(loss_sum: float, count: int, confusion: np.ndarray, prefix: str) -> dict[str, float]:
    """Loss, accuracy and macro F1 from summed statistics, keys prefixed (`val_`, `test_`)."""
    total = max(count, 1)
    return {
        f"{prefix}loss": loss_sum / total,
        f"{prefix}accuracy": float(np.trace(confusion)) / total,
        f"{prefix}f1_macro": macro_f1(confusion),
    }


class ClassificationMetrics:
    """Cross-entropy, accuracy and macro F1 from a confusion matrix summed over ranks."""

    def __init__(self, num_labels: int, device: torch.device) -> None:
        self.num_labels = num_labels
        self.stats = torch.zeros(2 + num_labels * num_labels, dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Loss sum, rows and confusion cells of one batch."""
        n = self.num_labels
        self.stats[0] += F.cross_entropy(logits, labels, reduction="sum").double()
        self.stats[1] += labels.numel()
        cells = labels * n + logits.argmax(dim=-1)
        self.stats[2:] += torch.bincount(cells, minlength=n * n).double()

    def result(self, prefix: str) -> dict[str, float]:
        """`loss`, `accuracy`, `f1_macro`."""
        stats = all_reduce_sum(self.stats)
        confusion = stats[2:].cpu().numpy().reshape(self.num_labels, self.num_labels)
        return summarize(stats[0].item(), int(stats[1].item()), confusion, prefix)


# --------------------------------------------------------------------- multi-label


def multi_label_scores(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, exact: float, rows: int
) -> dict[str, float]:
    """Micro and macro F1 and subset accuracy from per-label counts, as scikit-learn's
    `f1_score(average="micro" | "macro")` and `accuracy_score` compute them on a multi-hot
    matrix (a label with no true and no predicted row has F1 0, and counts in the macro mean)."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    denom = 2 * tp + fp + fn
    per_label = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "f1_micro": float(2 * tp.sum() / micro_denom) if micro_denom > 0 else 0.0,
        "f1_macro": float(per_label.mean()) if len(per_label) else 0.0,
        "subset_accuracy": float(exact) / rows if rows else 0.0,
    }


class MultiLabelMetrics:
    """Binary cross-entropy, per-label TP / FP / FN and exact matches, summed over ranks; a
    label is predicted when its sigmoid probability is at least `threshold`."""

    def __init__(self, num_labels: int, threshold: float, device: torch.device) -> None:
        self.num_labels = num_labels
        self.threshold = threshold
        # loss sum, rows, exact matches, then TP, FP, FN per label
        self.stats = torch.zeros(3 + 3 * num_labels, dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Loss sum (per row: the mean over labels), counts of one batch."""
        truth = labels > 0.5
        predicted = torch.sigmoid(logits) >= self.threshold
        loss = F.binary_cross_entropy_with_logits(logits.double(), labels.double(), reduction="sum")
        n = self.num_labels
        self.stats[0] += loss.double() / n
        self.stats[1] += labels.shape[0]
        self.stats[2] += (predicted == truth).all(dim=1).sum().double()
        self.stats[3 : 3 + n] += (predicted & truth).sum(dim=0).double()
        self.stats[3 + n : 3 + 2 * n] += (predicted & ~truth).sum(dim=0).double()
        self.stats[3 + 2 * n :] += (~predicted & truth).sum(dim=0).double()

    def result(self, prefix: str) -> dict[str, float]:
        """`loss`, `f1_micro`, `f1_macro`, `subset_accuracy`."""
        stats = all_reduce_sum(self.stats).cpu().numpy()
        n, rows = self.num_labels, int(stats[1])
        scores = multi_label_scores(
            stats[3 : 3 + n], stats[3 + n : 3 + 2 * n], stats[3 + 2 * n :], stats[2], rows
        )
        out = {f"{prefix}loss": float(stats[0]) / rows if rows else math.nan}
        return out | {prefix + k: v for k, v in scores.items()}


# --------------------------------------------------------------------- regression


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (`scipy.stats.rankdata`'s
    `average` method, which `spearmanr` uses)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_run = np.r_[True, ordered[1:] != ordered[:-1]]
    run = np.cumsum(starts_run) - 1
    starts = np.flatnonzero(starts_run)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[run]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two samples (NaN when either is constant, as scipy's)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if denom == 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(np.dot(x, y)) / denom))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks (ties as scipy's `spearmanr`)."""
    return pearson(average_ranks(np.asarray(x)), average_ranks(np.asarray(y)))


def regression_scores(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """MSE and RMSE over every value; Pearson and Spearman per target column, averaged over
    columns (one column: that column's)."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    mse = float(np.mean((predictions - targets) ** 2)) if predictions.size else math.nan
    columns = range(targets.shape[1])
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "pearson": float(np.mean([pearson(predictions[:, j], targets[:, j]) for j in columns])),
        "spearman": float(np.mean([spearman(predictions[:, j], targets[:, j]) for j in columns])),
    }


class RegressionMetrics:
    """MSE, RMSE, Pearson and Spearman over every rank's predictions, all-gathered."""

    def __init__(self, num_targets: int, device: torch.device) -> None:
        self.num_targets = num_targets
        self.device = device
        self.rows: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Keeps the batch's predictions and targets side by side (float64, on the device)."""
        k = self.num_targets
        self.rows.append(
            torch.cat([logits.double().reshape(-1, k), labels.double().reshape(-1, k)], 1)
        )

    def result(self, prefix: str) -> dict[str, float]:
        """`loss` (the MSE, the training loss), `mse`, `rmse`, `pearson`, `spearman`."""
        k = self.num_targets
        empty = torch.zeros((0, 2 * k), dtype=torch.float64, device=self.device)
        both = all_gather_rows(torch.cat([empty, *self.rows])).cpu().numpy()
        scores = regression_scores(both[:, :k], both[:, k:])
        return {f"{prefix}loss": scores["mse"]} | {prefix + n: v for n, v in scores.items()}


# --------------------------------------------------------------------- the evaluation loop


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    metrics: int | MetricState,
    device: torch.device,
    autocast: Callable[[], object],
    prefix: str,
    logits_of: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Metrics of `model` over this rank's batches, reduced over every rank.

    `model` must be the unwrapped module: a DDP forward would add collectives that ranks with
    different shard sizes would not match. `metrics` is the task's fresh `MetricState` (an int:
    single-label classification with that many classes). `logits_of(model, batch)` is the
    task's forward (default: a transformers model's `model(**batch).logits`).
    """
    state = ClassificationMetrics(metrics, device) if isinstance(metrics, int) else metrics
    was_training = model.training
    model.eval()
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")
        with autocast():  # type: ignore[attr-defined]
            logits = logits_of(model, batch) if logits_of else model(**batch).logits
        state.add(logits.float(), labels)
    if isinstance(state, ModelMetricState):
        with autocast():  # type: ignore[attr-defined]
            state.add_model(model, prefix)
    model.train(was_training)
    return state.result(prefix)
