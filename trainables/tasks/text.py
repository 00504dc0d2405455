"""Text classification as a task: tokenize once, pad per batch, a transformers classifier.

`TextTask` is also the base of the other tasks on a sequence-classification head
(`regression`, `multi_label`): they change the labels' loss, metrics and `problem_type` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import FinetuneConfig, ModelConfig
from trainables.data import (
    Dataset,
    TokenizedSplit,
    build_dataset,
    collate,
    eval_batches,
    tokenize_split,
)
from trainables.lora import build_by_method, save_by_method, with_processor
from trainables.metrics import ClassificationMetrics, MetricState
from trainables.models import build_model, load_tokenizer

#: A job's splits tokenized ahead by its sweep, with the label names (`trainables/prepared.py`).
Tokens = tuple[dict[str, TokenizedSplit], tuple[str, ...]]


T = TypeVar("T", bound="TextTask")


class TextTask:
    """The text side of the task seam (see `trainables.tasks.Task`).

    Args:
        cfg: The job.
        dataset: Its splits (None with `prepared`).
        model: Where the tokenizer comes from (the job's model, or a saved folder).
        prepared: Its splits' tokens and label names, prepared for its data and tokenizer.
    """

    kind = "text"
    #: What transformers' sequence-classification head is told it does (saved in its config).
    problem_type = "single_label_classification"

    @classmethod
    def prepare(
        cls: type[T],
        cfg: FinetuneConfig,
        dataset: Dataset | None = None,
        model: ModelConfig | None = None,
        tokens: Tokens | None = None,
    ) -> T:
        """The task of `cfg`, on the `tokens` its sweep prepared when given (its own data's,
        for its own model), else its data read and tokenized here. A subclass's `prepare` makes
        that subclass (each task module exports its class's as `prepare`)."""
        if tokens is not None:
            return cls(cfg, None, cfg.model, tokens)
        return cls(cfg, dataset or build_dataset(cfg.data, task=cfg.task), model or cfg.model)

    def __init__(
        self,
        cfg: FinetuneConfig,
        dataset: Dataset | None,
        model: ModelConfig,
        prepared: Tokens | None = None,
    ) -> None:
        self.tokenizer = load_tokenizer(model.name_or_path)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.job_model = cfg.model
        self.training = cfg.training
        if prepared is not None:  # tokenized once for the sweep (`trainables/prepared.py`)
            self.tokens, self.label_names = prepared
        else:
            assert dataset is not None
            self.label_names = dataset.label_names
            self.tokens = {
                name: tokenize_split(split, self.tokenizer, cfg.data.max_length)
                for name, split in dataset.splits.items()
            }

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split."""
        return {name: len(split) for name, split in self.tokens.items()}

    def lengths(self, split: str) -> np.ndarray | None:
        """Token counts per row."""
        return self.tokens[split].lengths

    def batch(
        self, split: str, rows: Sequence[int], train: bool, key: Sequence[int] = ()
    ) -> dict[str, torch.Tensor]:
        """Token ids padded to the batch's longest row, and `labels`."""
        return collate(self.tokens[split], rows, self.pad_id)

    def eval_order(self, split: str, rows: list[int], batch_size: int) -> list[list[int]]:
        """Evaluation batches of `rows` sorted by length (least padding)."""
        return eval_batches(self.tokens[split], rows, batch_size)

    def build_model(self, model: ModelConfig) -> torch.nn.Module:
        """The backbone with a fresh head for the labels, fine-tuned by `model.method` (a
        checkpoint folder resumes: a LoRA run's adapters go back onto the job's backbone)."""
        return build_by_method(
            model,
            self.job_model,
            lambda cfg: build_model(cfg, self.label_names, self.problem_type),
            task_type="SEQ_CLS",
        )

    @staticmethod
    def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits for a batch without its labels."""
        return model(**batch).logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (with `training.label_smoothing`)."""
        return F.cross_entropy(logits, labels, label_smoothing=self.training.label_smoothing)

    def metric_state(self, device: torch.device) -> MetricState:
        """Loss, accuracy and macro F1 from a confusion matrix summed over ranks."""
        return ClassificationMetrics(len(self.label_names), device)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """`save_pretrained` of the model and its tokenizer (a LoRA model: merged, with its
        adapter files in `adapter/`)."""
        save_by_method(model, folder, self.job_model.method, self._save_plain)

    def _save_plain(self, model: Any, folder: Path) -> None:
        with_processor(self.tokenizer)(model, folder)  # a subclass adds to the saved config


#: The seam's entry point (`trainables.tasks.prepare_task`).
prepare = TextTask.prepare
