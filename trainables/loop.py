"""The per-worker fine-tuning loop that Ray Train runs on every DDP rank.

`train_fn_per_worker(config)` reads top to bottom: data → model → optimizer → resume →
for each micro-batch: forward/backward (accumulating) → clip → step → every `eval_every`
steps evaluate, report and checkpoint. Everything else lives in small functions beside it.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F

from trainables.checkpointing import LoopPosition, load_training_state, save_checkpoint
from trainables.config import FinetuneConfig
from trainables.data import (
    TokenizedSplit,
    build_dataset,
    collate,
    epoch_batches,
    eval_batches,
    shard_rows,
    tokenize_split,
)
from trainables.metrics import all_reduce_sum, evaluate
from trainables.models import build_model, load_tokenizer
from trainables.optim import ImprovementTracker, build_optimizer, lr_multiplier, warmup_steps


def precision_tools(
    precision: str, device: torch.device
) -> tuple[Callable[[], Any], torch.amp.GradScaler | None]:
    """An autocast context factory and, for fp16, a gradient scaler. CPU runs in fp32."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext, None
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        if precision == "fp32":
            return contextlib.nullcontext, None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def eval_iter(
    split: TokenizedSplit, batch_size: int, pad_id: int, rank: int, world: int
) -> Iterator[dict[str, torch.Tensor]]:
    rows = shard_rows(len(split), world, rank)
    for batch_rows in eval_batches(split, rows, batch_size * 2):
        yield collate(split, batch_rows, pad_id)


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Fine-tunes one model as one DDP rank; reports and checkpoints at every evaluation."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = FinetuneConfig.model_validate(config)
    t = cfg.training
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    autocast, scaler = precision_tools(t.precision, device)

    tokenizer = load_tokenizer(cfg.model.name_or_path)
    dataset = build_dataset(cfg.data)
    splits = {
        name: tokenize_split(split, tokenizer, cfg.data.max_length)
        for name, split in dataset.splits.items()
    }
    train, lengths, pad_id = splits["train"], splits["train"].lengths, tokenizer.pad_token_id or 0
    num_labels = len(dataset.label_names)

    batches_per_epoch = math.ceil(len(train) / (t.batch_size * world))
    steps_per_epoch = math.ceil(batches_per_epoch / t.grad_accum_steps)
    total_steps = t.max_steps or steps_per_epoch * t.epochs
    eval_every = steps_per_epoch if t.eval_every == "epoch" else t.eval_every
    warmup = warmup_steps(cfg.schedule, total_steps)

    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_dir:
        torch.manual_seed(t.seed)  # the same fresh head on every rank
        source = (
            cfg.model.model_copy(update={"name_or_path": resume_dir}) if resume_dir else cfg.model
        )
        unwrapped = build_model(source, dataset.label_names)
        model = ray.train.torch.prepare_model(unwrapped)
        optimizer = build_optimizer(unwrapped, cfg.optimizer)
        tracker = ImprovementTracker(mode="min" if t.monitor == "val_loss" else "max")
        pos = LoopPosition()
        torch.manual_seed(t.seed * 1000 + rank + 1)  # dropout differs between ranks
        if resume_dir:
            pos, tracker_state = load_training_state(Path(resume_dir), rank, optimizer, scaler)
            tracker.load_state_dict(tracker_state)

    model.train()
    window = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, rows, seconds
    while pos.step < total_steps and not pos.stopped:
        batches = epoch_batches(
            lengths, t.batch_size, world, rank, t.seed, pos.epoch, cfg.data.group_by_length
        )
        for micro in range(pos.batches_done, len(batches)):
            tick = time.perf_counter()
            group_start = micro - micro % t.grad_accum_steps
            group_len = min(t.grad_accum_steps, len(batches) - group_start)
            steps_now = micro + 1 - group_start == group_len
            batch = {
                k: v.to(device, non_blocking=True)
                for k, v in collate(train, batches[micro], pad_id).items()
            }
            labels = batch.pop("labels")
            # Gradients are only all-reduced on the micro-batch that completes a step.
            sync = contextlib.nullcontext() if steps_now or world == 1 else model.no_sync()
            with sync, autocast():
                logits = model(**batch).logits
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing)
                scaled = loss / group_len
                (scaler.scale(scaled) if scaler else scaled).backward()
            window[0] += loss.detach().double() * labels.numel()
            window[1] += labels.numel()
            pos.batches_done = micro + 1
            if steps_now:
                lr = (
                    cfg.optimizer.lr
                    * tracker.lr_scale
                    * lr_multiplier(pos.step, total_steps, warmup, cfg.schedule.name)
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if scaler:
                    scaler.unscale_(optimizer)
                if cfg.optimizer.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pos.step += 1
            window[2] += time.perf_counter() - tick
            if not steps_now or (pos.step % eval_every and pos.step < total_steps):
                continue

            if pos.batches_done == len(batches):
                pos.epoch, pos.batches_done = pos.epoch + 1, 0
            metrics = _train_metrics(window, lr, pos.step, steps_per_epoch)
            metrics |= evaluate(
                unwrapped,
                eval_iter(splits["validation"], t.batch_size, pad_id, rank, world),
                num_labels,
                device,
                autocast,
                prefix="val_",
            )
            tracker.update(metrics[t.monitor])
            plateaued = tracker.evals_since_best % cfg.schedule.plateau_patience == 0
            if cfg.schedule.name == "reduce_on_plateau" and tracker.evals_since_best and plateaued:
                tracker.lr_scale *= cfg.schedule.plateau_factor
            patience = t.early_stopping_patience
            pos.stopped = bool(patience and tracker.evals_since_best >= patience)
            if (pos.stopped or pos.step >= total_steps) and "test" in splits:
                metrics |= evaluate(
                    unwrapped,
                    eval_iter(splits["test"], t.batch_size, pad_id, rank, world),
                    num_labels,
                    device,
                    autocast,
                    prefix="test_",
                )
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(
                    Path(folder),
                    rank,
                    unwrapped,
                    tokenizer,
                    optimizer,
                    pos,
                    tracker.state_dict(),
                    scaler,
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
            window.zero_()
            if pos.stopped or pos.step >= total_steps or pos.batches_done == 0:
                break  # done, or the epoch just ended (its position already moved on)
        else:
            pos.epoch, pos.batches_done = pos.epoch + 1, 0


def _train_metrics(
    window: torch.Tensor, lr: float, step: int, steps_per_epoch: int
) -> dict[str, float]:
    """Training loss and throughput since the last report, summed over every rank."""
    loss_sum, rows, _ = all_reduce_sum(window.clone()).tolist()
    seconds = window[2].item()  # each rank's own wall time; ranks run in lockstep under DDP
    return {
        "train_loss": loss_sum / max(rows, 1),
        "learning_rate": lr,
        "epoch": step / steps_per_epoch,
        "step": step,
        "samples_per_second": rows / seconds if seconds > 0 else 0.0,
        # Training-step wall time since the last report: what a sweep's utilisation counts.
        "step_seconds": seconds,
    }
