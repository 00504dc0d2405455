"""Regression as a task: one number (or several, `data.label_columns`) per text or text pair,
predicted by a transformers sequence-classification head with `problem_type: regression`.

Loss: mean squared error. Metrics: `mse` (also reported as `loss`), `rmse`, and Pearson's and
Spearman's correlation over the whole split, every rank's predictions gathered
(`trainables.metrics.RegressionMetrics`). The saved config has `num_labels` = targets and
`problem_type: regression`, so `AutoModelForSequenceClassification.from_pretrained` loads it as
a regressor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.metrics import MetricState, RegressionMetrics
from trainables.tasks.text import TextTask


class RegressionTask(TextTask):
    """The regression side of the task seam (see `trainables.tasks.Task`); `label_names` are
    the targets' names."""

    kind = "regression"
    problem_type = "regression"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean squared error over every target of every row."""
        return F.mse_loss(logits, labels.to(logits.dtype).reshape(logits.shape))

    def metric_state(self, device: torch.device) -> MetricState:
        """MSE, RMSE, Pearson and Spearman over every rank's gathered predictions."""
        return RegressionMetrics(len(self.label_names), device)


#: The seam's entry point (`trainables.tasks.prepare_task`).
prepare = RegressionTask.prepare
