"""Multi-label classification as a task: a set of classes per text, a transformers
sequence-classification head with `problem_type: multi_label_classification`.

Loss: binary cross-entropy with logits, every class an independent yes/no. A class is
predicted when its sigmoid probability is at least `training.threshold` (a searchable field).
Metrics: micro and macro F1 and subset accuracy (the predicted set equals the true set), from
per-class TP / FP / FN and exact-match counts summed over ranks
(`trainables.metrics.MultiLabelMetrics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainables.metrics import MetricState, MultiLabelMetrics
from trainables.tasks.text import TextTask


class MultiLabelTask(TextTask):
    """The multi-label side of the task seam (see `trainables.tasks.Task`)."""

    kind = "multi_label"
    problem_type = "multi_label_classification"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy with logits, the mean over every class of every row."""
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    def metric_state(self, device: torch.device) -> MetricState:
        """Per-class TP / FP / FN and exact matches at `training.threshold`, summed."""
        return MultiLabelMetrics(len(self.label_names), self.training.threshold, device)

    def _save_plain(self, model: Any, folder: Path) -> None:
        # The saved config says at which probability a class counts as predicted, so
        # `sweeps verify` (and a user reading config.json) applies the threshold it trained at.
        model.config.decision_threshold = self.training.threshold
        super()._save_plain(model, folder)


#: The seam's entry point (`trainables.tasks.prepare_task`).
prepare = MultiLabelTask.prepare
