"""The trivial predictor of a job: what a model that learned nothing from the inputs scores.

Every task has one, fitted on the training split's labels only:

- single-label classification (`text`, `image`): the majority class. Its logits are the log of
  the classes' training frequencies (add-one smoothed, so a class unseen in training has a
  finite loss): the argmax is the majority class, and the loss is the cross-entropy of always
  answering the training prior (the best a constant can do).
- `regression`: the training mean of each target, for every row. Pearson's and Spearman's
  correlation of a constant are undefined (NaN, as scipy's); they are recorded as 0.0, no
  correlation.
- `multi_label`: the most frequent label set of the training rows, for every row. Each class's
  probability is its training frequency (add-one smoothed), moved just across the decision
  threshold where that is needed for the predicted set to be exactly the most frequent one (so
  the loss is near the best constant's and the F1s / subset accuracy are the set's).
- `token_classification`: every word tagged with the most frequent training tag (`O` in any
  NER data); logits are the log of the tags' training frequencies over labelled pieces.

Its figures are computed with the task's own metric code (`Task.metric_state`) on those
predictions, so they are the same quantities as a trial's `val_*` / `test_*` metrics.

`noise` holds, for the minimised metrics (losses, errors), twice the standard error of the
trivial predictor's figure over the validation split: the standard deviation of its per-row
values (each row evaluated alone, at most `NOISE_ROWS` rows sampled) over the square root of
the split's rows (RMSE: the MSE's by the delta method). How other metrics' noise is judged is
in `sweeps.store.trivial`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainables.config import FinetuneConfig
from trainables.reporting import natural_mode

#: Rows evaluated one at a time to estimate the per-row spread of a minimised metric.
NOISE_ROWS = 500
#: Rows per evaluation batch when reading labels and scoring.
_BATCH = 256
#: Ignored piece label of token classification (`trainables.tasks.token_data.IGNORE`).
_IGNORE = -100
#: How far past the decision threshold a multi-label logit is moved (see the module's doc).
THRESHOLD_MARGIN = 1e-3


@dataclass(frozen=True)
class Predictor:
    """A fitted trivial predictor: what it answers, in words, and its logits for a batch's
    labels (only their shape is used)."""

    description: str
    logits: Callable[[torch.Tensor], torch.Tensor]


#: Fits a trivial predictor: the job, its label names, its training batches' labels.
Fit = Callable[[FinetuneConfig, tuple[str, ...], list[torch.Tensor]], Predictor]


def _log_prior(counts: np.ndarray) -> torch.Tensor:
    smoothed = (counts.astype(np.float64) + 1.0) / (counts.sum() + len(counts))
    return torch.from_numpy(np.log(smoothed)).float()


def _majority(cfg: FinetuneConfig, names: tuple[str, ...], labels: list[torch.Tensor]) -> Predictor:
    ids = torch.cat([lab.reshape(-1) for lab in labels]).long().numpy()
    counts = np.bincount(ids, minlength=len(names))
    prior = _log_prior(counts)
    top = int(np.argmax(counts))
    share = counts[top] / max(int(counts.sum()), 1)
    return Predictor(
        f"always the majority class {names[top]!r} ({share:.1%} of training rows)",
        lambda labels: prior.expand(labels.shape[0], len(names)),
    )


def _outside(cfg: FinetuneConfig, names: tuple[str, ...], labels: list[torch.Tensor]) -> Predictor:
    pieces = torch.cat([lab[:, 1:].reshape(-1) for lab in labels]).long().numpy()
    counts = np.bincount(pieces[pieces != _IGNORE], minlength=len(names))
    prior = _log_prior(counts)
    top = int(np.argmax(counts))
    share = counts[top] / max(int(counts.sum()), 1)
    return Predictor(
        f"every word tagged {names[top]!r} ({share:.1%} of training words)",
        lambda labels: prior.expand(labels.shape[0], labels.shape[1] - 1, len(names)),
    )


def _mean(cfg: FinetuneConfig, names: tuple[str, ...], labels: list[torch.Tensor]) -> Predictor:
    targets = torch.cat([lab.double().reshape(lab.shape[0], -1) for lab in labels])
    mean = targets.mean(dim=0).float()
    shown = ", ".join(f"{v:.4g}" for v in mean.tolist())
    return Predictor(
        f"always the training mean ({shown})",
        lambda labels: mean.expand(labels.shape[0], len(mean)),
    )


def _label_set(
    cfg: FinetuneConfig, names: tuple[str, ...], labels: list[torch.Tensor]
) -> Predictor:
    rows = (torch.cat([lab.reshape(lab.shape[0], -1) for lab in labels]) > 0.5).numpy()
    sets, counts = np.unique(rows, axis=0, return_counts=True)
    mode = sets[int(np.argmax(counts))]
    frequency = (rows.sum(axis=0) + 1.0) / (len(rows) + 2.0)
    logit = np.log(frequency / (1.0 - frequency))
    t = cfg.training.threshold
    cut = math.log(t / (1.0 - t))
    logit = np.where(
        mode, np.maximum(logit, cut + THRESHOLD_MARGIN), np.minimum(logit, cut - THRESHOLD_MARGIN)
    )
    row = torch.from_numpy(logit).float()
    chosen = [names[i] for i in np.flatnonzero(mode)]
    share = counts.max() / len(rows)
    return Predictor(
        f"always the most frequent label set {chosen} ({share:.1%} of training rows)",
        lambda labels: row.expand(labels.shape[0], len(names)),
    )


#: The trivial predictor of each task kind (`Task.kind`), fitted on the training labels.
PREDICTORS: dict[str, Fit] = {
    "text": _majority,
    "image": _majority,
    "regression": _mean,
    "multi_label": _label_set,
    "token_classification": _outside,
}

#: Metrics a constant prediction leaves undefined (NaN), recorded as this value.
UNDEFINED_FOR_A_CONSTANT = {"pearson": 0.0, "spearman": 0.0}


def _batches(task: Any, split: str, size: int = _BATCH) -> Iterator[dict[str, torch.Tensor]]:
    rows = list(range(task.splits[split]))
    for chunk in task.eval_order(split, rows, size):
        yield task.batch(split, chunk, train=False)


def _score(task: Any, predictor: Predictor, batches: Any, prefix: str) -> dict[str, float]:
    state = task.metric_state(torch.device("cpu"))
    for batch in batches:
        labels = batch["labels"]
        state.add(predictor.logits(labels).float(), labels)
    scores: dict[str, float] = state.result(prefix)
    for name, value in scores.items():
        base = name.removeprefix(prefix)
        if base in UNDEFINED_FOR_A_CONSTANT and not math.isfinite(value):
            scores[name] = UNDEFINED_FOR_A_CONSTANT[base]
    return scores


def _row_noise(task: Any, predictor: Predictor, metrics: dict[str, float]) -> dict[str, float]:
    """Twice the standard error of each minimised validation metric (see the module's doc)."""
    n = task.splits["validation"]
    minimised = [m for m in metrics if natural_mode(m) == "min" and not m.endswith("rmse")]
    if n < 2 or not minimised:
        return {}
    rows = np.random.default_rng(0).choice(n, size=min(n, NOISE_ROWS), replace=False)
    values: dict[str, list[float]] = {m: [] for m in minimised}
    for row in rows.tolist():
        one = _score(task, predictor, [task.batch("validation", [row], train=False)], "val_")
        for m in minimised:
            values[m].append(one[m])
    noise = {m: 2.0 * float(np.std(v, ddof=1)) / math.sqrt(n) for m, v in values.items()}
    for m in metrics:
        mse = m.removesuffix("rmse") + "mse"
        if m.endswith("rmse") and mse in noise and metrics[m] > 0:
            noise[m] = noise[mse] / (2.0 * metrics[m])
    return noise


def trivial_figures(cfg: FinetuneConfig, prepared_data: str | None = None) -> dict[str, Any]:
    """The trivial predictor of `cfg` fitted on its training split, and its figures.

    Args:
        cfg: The job.
        prepared_data: Where its sweep tokenized its data (`trainables/prepared.py`), if it did.

    Returns:
        `{"task", "predictor" (in words), "validation": {val_* metrics}, "test": {test_*
        metrics} (empty without a test split), "rows": {split: rows}, "noise": {val_* metric:
        2 standard errors} for the minimised metrics}`.
    """
    from trainables.tasks import prepare_task

    task = prepare_task(cfg, prepared_data=prepared_data)
    train_labels = [batch["labels"] for batch in _batches(task, "train")]
    predictor = PREDICTORS[task.kind](cfg, tuple(task.label_names), train_labels)
    validation = _score(task, predictor, _batches(task, "validation"), "val_")
    test = _score(task, predictor, _batches(task, "test"), "test_") if "test" in task.splits else {}
    return {
        "task": task.kind,
        "predictor": predictor.description,
        "validation": validation,
        "test": test,
        "rows": dict(task.splits),
        "noise": _row_noise(task, predictor, validation),
    }
