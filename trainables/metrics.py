"""Evaluation across DDP ranks that equals evaluation of the whole split in one process.

Every rank evaluates a disjoint shard (no padding rows, unlike DistributedSampler), then the
loss sum, row count and confusion matrix are summed across ranks; accuracy and macro F1 are
computed from the summed confusion matrix, so no metric is rank 0's shard alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sums a tensor over all ranks (identity outside a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


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


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    num_labels: int,
    device: torch.device,
    autocast: Callable[[], object],
    prefix: str,
    logits_of: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Metrics of `model` over this rank's batches, reduced over every rank.

    `model` must be the unwrapped module: a DDP forward would add collectives that ranks with
    different shard sizes would not match. `logits_of(model, batch)` is the task's forward
    (default: a transformers model's `model(**batch).logits`).
    """
    was_training = model.training
    model.eval()
    stats = torch.zeros(2 + num_labels * num_labels, dtype=torch.float64, device=device)
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")
        with autocast():  # type: ignore[attr-defined]
            logits = logits_of(model, batch) if logits_of else model(**batch).logits
        stats[0] += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        stats[1] += labels.numel()
        cells = labels * num_labels + logits.argmax(dim=-1)
        stats[2:] += torch.bincount(cells, minlength=num_labels * num_labels).double()
    model.train(was_training)
    all_reduce_sum(stats)
    confusion = stats[2:].cpu().numpy().reshape(num_labels, num_labels)
    return summarize(stats[0].item(), int(stats[1].item()), confusion, prefix)
