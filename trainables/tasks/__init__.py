"""The task seam: how a job's rows become batches, which model, how it is saved.

Text and image classification sit behind one small interface, `Task`, chosen by the job's
`task` (`FinetuneConfig.task`, inferred from the data and model when unset). The loop,
checkpoints, resume, DDP, reports and evaluation call only this interface and do not branch
on the task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from trainables.config import FinetuneConfig, ModelConfig
from trainables.data import Dataset, build_dataset


class Task(Protocol):
    """One job's prepared data and its model family."""

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
        """`rows` cut into evaluation batches (any order: metrics are sums)."""
        ...

    def build_model(self, model: ModelConfig) -> torch.nn.Module:
        """The model `model` names with a fresh head for `label_names`."""
        ...

    @staticmethod
    def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of `model` (unwrapped or DDP) for a batch without `labels`."""
        ...

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """Writes the (unwrapped) model in the format its library loads, with what a user
        needs to run it (tokenizer, or preprocessing config)."""
        ...


def prepare_task(
    cfg: FinetuneConfig, dataset: Dataset | None = None, model: ModelConfig | None = None
) -> Task:
    """The job's task with its data read and prepared (tokenized, or decoded); a text job
    takes the tokens its sweep prepared (`trainables/prepared.py`) when they are its own.

    Args:
        cfg: The job.
        dataset: Its splits, when already built.
        model: The model whose tokenizer / preprocessing to use (default the job's).
    """
    if cfg.task == "text" and dataset is None and model is None:
        from trainables.prepared import load_tokens
        from trainables.tasks.text import TextTask

        prepared = load_tokens(cfg)
        if prepared is not None:
            return TextTask(cfg, None, cfg.model, prepared)
    dataset = dataset or build_dataset(cfg.data, task=cfg.task)
    model = model or cfg.model
    if cfg.task == "image":
        from trainables.tasks.image import ImageTask

        return ImageTask(cfg, dataset, model)
    from trainables.tasks.text import TextTask

    return TextTask(cfg, dataset, model)
