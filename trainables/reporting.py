"""The names the per-worker loop reports under, per task, and each metric's natural direction:
light to import (no torch) for specs and result readers.

A task registers here the validation metrics it reports (`TASK_METRICS`, `val_` names; the same
names with `test_` come in a run's last report when there is a test split), the one a sweep
selects by by default (`TARGET_METRICS`) and the direction of any metric name that is not
"higher is better" (`MINIMISED`). Everything that selects by a
metric (`training.monitor`, `search.metric`, `promote.metric`, the JSON Schema, `Objective.of`)
reads these tables, so a new task adds its names here and nowhere else.
"""

from __future__ import annotations

from typing import Literal

#: Validation metrics each task reports at every evaluation (the first is its loss).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "text": ("val_loss", "val_accuracy", "val_f1_macro"),
    "image": ("val_loss", "val_accuracy", "val_f1_macro"),
    "regression": ("val_loss", "val_mse", "val_rmse", "val_pearson", "val_spearman"),
    "multi_label": ("val_loss", "val_f1_micro", "val_f1_macro", "val_subset_accuracy"),
    "token_classification": (
        "val_loss",
        "val_f1_entity",
        "val_precision_entity",
        "val_recall_entity",
        "val_token_accuracy",
    ),
    "causal_lm": ("val_loss", "val_perplexity", "val_exact_match", "val_contains"),
}

#: What a sweep of each task selects by unless `search.metric` says otherwise: the figure the
#: field reports for it (GLUE STS-B and sentence similarity: Spearman; GoEmotions: macro F1,
#: as micro F1 rewards the frequent labels; CoNLL / WNUT NER: seqeval's entity F1; generative
#: SFT: held-out loss, as generation scores need `training.eval_generate_rows`).
TARGET_METRICS: dict[str, str] = {
    "text": "val_accuracy",
    "image": "val_accuracy",
    "regression": "val_spearman",
    "multi_label": "val_f1_macro",
    "token_classification": "val_f1_entity",
    "causal_lm": "val_loss",
}

#: Metrics of text generated on validation rows: reported only by a job that turns generation
#: on (`training.eval_generate_rows`).
GENERATION_METRICS = ("val_exact_match", "val_contains")

#: Metric names (without their `val_` / `test_` / `train_` prefix) where lower is better;
#: every other metric is better higher.
MINIMISED = frozenset({"loss", "mse", "rmse", "mae", "perplexity"})

#: What every report carries besides the task's validation metrics.
TRAINING_METRICS = (
    "train_loss",
    "learning_rate",
    "epoch",
    "step",
    "samples_per_second",
    "step_seconds",
)


def task_metrics(task: str) -> tuple[str, ...]:
    """The validation metrics `task` reports (empty for an unknown task)."""
    return TASK_METRICS.get(task, ())


def target_metric(task: str) -> str:
    """The metric a sweep of `task` selects by when its spec names none (`TARGET_METRICS`)."""
    return TARGET_METRICS.get(task, "val_loss")


def natural_mode(metric: str) -> Literal["min", "max"]:
    """`min` for losses and errors, `max` for everything else (accuracy, F1, correlations)."""
    base = metric.split("_", 1)[1] if metric.startswith(("val_", "test_", "train_")) else metric
    return "min" if base in MINIMISED or base.endswith("loss") else "max"


def validation_metrics() -> tuple[str, ...]:
    """Every task's validation metrics, each once, in registration order."""
    return tuple(dict.fromkeys(m for names in TASK_METRICS.values() for m in names))


def reported_metrics() -> tuple[str, ...]:
    """Every metric any task's report may carry (the test_* ones only in a final report)."""
    val = validation_metrics()
    test = tuple("test_" + m.removeprefix("val_") for m in val)
    return (*TRAINING_METRICS[:1], *val, *TRAINING_METRICS[1:], *test)


#: Every metric each report may carry, for any task (the test_* ones only in the final report,
#: with a test split). A tuple built at import: tasks register above, not at run time.
REPORTED_METRICS = reported_metrics()
