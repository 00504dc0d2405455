"""The task seam: how a job's rows become batches, which loss and metrics, which model, how it
is saved.

Every task sits behind one small interface, `Task`, chosen by the job's `task`
(`FinetuneConfig.task`, inferred from the data and model when unset). The loop, checkpoints,
resume, DDP, reports, evaluation and promotion call only this interface and do not branch on
the task.

A task is one module under `trainables/tasks/`, registered in `TASK_MODULES`, that defines
`prepare(cfg, dataset, model) -> Task` (a task `trainables.prepared` tokenizes ahead also takes
`tokens=`; and, when it reads its data its own way, a
`read_dataset(cfg) -> Dataset`). Its metric names and their directions are registered in
`trainables.reporting`, how it reads labels from a table in `trainables.labels`, and how its
promoted model is loaded and run by `sweeps verify` in `trainables.tasks.saved`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from trainables.config import FinetuneConfig, ModelConfig
from trainables.data import Dataset, build_dataset
from trainables.metrics import MetricState

#: The module of each task (`FinetuneConfig.task`): it defines `prepare` (see above).
TASK_MODULES = {
    "text": "trainables.tasks.text",
    "image": "trainables.tasks.image",
    "regression": "trainables.tasks.regression",
    "multi_label": "trainables.tasks.multi_label",
    "token_classification": "trainables.tasks.token_classification",
    "causal_lm": "trainables.tasks.causal_lm",
}


class Task(Protocol):
    """One job's prepared data, its loss and metrics, and its model family."""

    kind: str
    label_names: tuple[str, ...]

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split (`train`, `validation`, optional `test`)."""
        ...

    def lengths(self, split: str) -> np.ndarray | None:
        """Per-row sizes that set a batch's memory and time (token counts), or None when every
        row costs the same (images). Batches are grouped by them when the data asks for it,
        and the batch holding the largest row goes first in every epoch."""
        ...

    def batch(
        self, split: str, rows: Sequence[int], train: bool, key: Sequence[int] = ()
    ) -> dict[str, torch.Tensor]:
        """The model inputs and `labels` of `rows`; `train` batches may be augmented, with
        randomness drawn only from `key` (seed, epoch, batch index, rank)."""
        ...

    def eval_order(self, split: str, rows: list[int], batch_size: int) -> list[list[int]]:
        """`rows` cut into evaluation batches (any order: metrics do not depend on it)."""
        ...

    def build_model(self, model: ModelConfig) -> torch.nn.Module:
        """The model `model` names with a fresh head for `label_names` (and the task's
        `problem_type` in its saved config)."""
        ...

    @staticmethod
    def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of `model` (unwrapped or DDP) for a batch without `labels`."""
        ...

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (a mean over its rows), from float logits and the
        batch's `labels`."""
        ...

    def metric_state(self, device: torch.device) -> MetricState:
        """Fresh running statistics for one evaluation: what is reduced over DDP ranks makes
        every metric exact (sums of counts, or gathered predictions; see
        `trainables.metrics`). Its keys are the task's metrics in `trainables.reporting`."""
        ...

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """Writes the (unwrapped) model in the format its library loads, with what a user
        needs to run it (tokenizer, or preprocessing config)."""
        ...


def task_module(task: str) -> object:
    """The module that implements `task`."""
    try:
        return importlib.import_module(TASK_MODULES[task])
    except KeyError:
        raise ValueError(f"task: {task!r} has no module; known: {sorted(TASK_MODULES)}") from None


def read_dataset(cfg: FinetuneConfig) -> Dataset:
    """The job's splits, read and checked as its task reads them (default: a table's columns,
    labels by `trainables.labels.label_format`)."""
    reader = getattr(task_module(cfg.task), "read_dataset", None)
    return reader(cfg) if reader is not None else build_dataset(cfg.data, task=cfg.task)


def prepare_task(
    cfg: FinetuneConfig,
    dataset: Dataset | None = None,
    model: ModelConfig | None = None,
    prepared_data: str | None = None,
) -> Task:
    """The job's task with its data read and prepared (tokenized, or decoded); a text job
    takes the tokens its sweep prepared when they are its own.

    Args:
        cfg: The job.
        dataset: Its splits, when already built.
        model: The model whose tokenizer / preprocessing to use (default the job's).
        prepared_data: Where its sweep tokenized the data (`trainables/prepared.py`); read
            only for the job's own data and model, and only by the tasks it prepares.
    """
    prepare = task_module(cfg.task).prepare  # type: ignore[attr-defined]
    if prepared_data is not None and dataset is None and model is None:
        from trainables.prepared import load_tokens

        tokens = load_tokens(cfg, prepared_data)  # None: prepared for another key
        if tokens is not None:
            prepared: Task = prepare(cfg, tokens=tokens)
            return prepared
    task: Task = prepare(cfg, dataset, model)
    return task
