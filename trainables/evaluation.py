"""Evaluating saved weights outside training: a saved model folder on one split of a job's
data, in this process, with the same metrics the loop reports."""

from __future__ import annotations

import contextlib

import torch

from trainables.config import FinetuneConfig
from trainables.loop import task_eval_iter
from trainables.metrics import evaluate
from trainables.tasks import prepare_task, read_dataset


def evaluate_folder(
    job: FinetuneConfig, folder: str, split: str = "test"
) -> dict[str, float] | None:
    """`split` metrics (`test_accuracy`, ...) of the model saved in `folder`; None when the
    job's data has no such split."""
    dataset = read_dataset(job)
    if split not in dataset.splits:
        return None
    # The folder's model as saved (a LoRA run's: merged), nothing frozen or added.
    saved = job.model.model_copy(
        update={"name_or_path": folder, "freeze": "none", "method": "full"}
    )
    dataset = type(dataset)({split: dataset.splits[split]}, dataset.label_names)
    task = prepare_task(job, dataset, saved)
    model = task.build_model(saved)
    device = torch.device("cpu")
    with torch.no_grad():
        return evaluate(
            model,
            task_eval_iter(task, split, job.training.batch_size, 0, 1),
            task.metric_state(device),
            device,
            contextlib.nullcontext,
            prefix="val_" if split == "validation" else f"{split}_",
            logits_of=task.logits,
        )
