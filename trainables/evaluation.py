"""Evaluating saved weights outside training: a `save_pretrained` folder on one split of a job's
data, in this process, with the same metrics the loop reports."""

from __future__ import annotations

import contextlib

import torch
from transformers import AutoModelForSequenceClassification

from trainables.config import FinetuneConfig
from trainables.data import build_dataset, tokenize_split
from trainables.loop import eval_iter
from trainables.metrics import evaluate
from trainables.models import load_tokenizer


def evaluate_folder(
    job: FinetuneConfig, folder: str, split: str = "test"
) -> dict[str, float] | None:
    """`split` metrics (`test_accuracy`, ...) of the model saved in `folder`; None when the
    job's data has no such split."""
    dataset = build_dataset(job.data)
    if split not in dataset.splits:
        return None
    tokenizer = load_tokenizer(folder)
    rows = tokenize_split(dataset.splits[split], tokenizer, job.data.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        return evaluate(
            model,
            eval_iter(rows, job.training.batch_size, tokenizer.pad_token_id or 0, 0, 1),
            len(dataset.label_names),
            torch.device("cpu"),
            contextlib.nullcontext,
            prefix="val_" if split == "validation" else f"{split}_",
        )
