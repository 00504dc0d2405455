"""The per-worker fine-tuning loop that Ray Train runs on every DDP rank, for any task.

`train_fn_per_worker(config)` reads top to bottom, like nanoGPT's train.py: data → plan → model
→ optimizer → resume, then one `while` over optimizer steps: forward/backward over the step's
micro-batches (accumulating) → set the LR → clip → step → at every evaluation point evaluate,
report and checkpoint. Batching, evaluation, the LR schedule and the step arithmetic live in
small functions beside it or in their own modules.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from trainables import session
from trainables.checkpointing import (
    LoopPosition,
    checkpoint_at,
    load_training_state,
    persist_checkpoint,
    resumable_checkpoint,
    save_checkpoint,
)
from trainables.config import FinetuneConfig
from trainables.data import TokenizedSplit, collate, epoch_batches, eval_batches, shard_rows
from trainables.metrics import all_reduce_sum, evaluate
from trainables.optim import ImprovementTracker, build_optimizer, lr_schedule
from trainables.plan import Plan, plan_job
from trainables.tasks import Task, prepare_task


def precision_tools(
    precision: str, device: torch.device
) -> tuple[Callable[[], Any], torch.amp.GradScaler]:
    """An autocast context factory and a gradient scaler, enabled only for fp16 on a GPU.

    A disabled scaler passes losses through and steps the optimizer plainly, so the loop calls
    it unconditionally. CPU runs in fp32.
    """
    dtype = None
    if device.type == "cuda" and precision != "fp32":
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if dtype is None:
        return contextlib.nullcontext, scaler
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def eval_iter(
    split: TokenizedSplit, batch_size: int, pad_id: int, rank: int, world: int
) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's evaluation batches of a tokenized `split` (for benchmarks that use the
    text pieces without a task): its own shard, in batches twice the training size."""
    rows = shard_rows(len(split), world, rank)
    for batch_rows in eval_batches(split, rows, batch_size * 2):
        yield collate(split, batch_rows, pad_id)


def task_eval_iter(
    task: Task, split: str, batch_size: int, rank: int, world: int
) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's evaluation batches of `split`: its own shard, in batches twice the training
    size (no activations are kept for a backward pass)."""
    rows = shard_rows(task.splits[split], world, rank)
    for batch_rows in task.eval_order(split, rows, batch_size * 2):
        yield task.batch(split, batch_rows, train=False)


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Fine-tunes one model as one DDP rank; reports and checkpoints at every evaluation.

    Args:
        config: A `FinetuneConfig` as a plain mapping (what Ray hands every worker).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = FinetuneConfig.model_validate(config)
    t = cfg.training
    ctx = session.context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    autocast, scaler = precision_tools(t.precision, device)

    task = prepare_task(cfg)  # read, checked, tokenized or decoded: once per worker
    n_train, lengths = task.splits["train"], task.lengths("train")
    grouped = lengths is not None and cfg.data.group_by_length
    lengths = lengths if lengths is not None else np.zeros(n_train, dtype=np.int64)
    plan = plan_job(cfg, n_train, world)
    lr_at = lr_schedule(cfg.optimizer.lr, cfg.schedule, plan.total_steps)

    @functools.lru_cache(maxsize=1)  # a pure function of the epoch: built on its first step only
    def batches_of(epoch: int) -> list[list[int]]:
        return epoch_batches(lengths, t.batch_size, world, rank, t.seed, epoch, grouped)

    # The run's own checkpoint (a restarted worker group) wins over the one it started from.
    own = resumable_checkpoint(t.checkpoints_to_keep)
    checkpoint = own or checkpoint_at(cfg.start_from)
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_dir:
        torch.manual_seed(t.seed)  # the same fresh head on every rank
        source = (
            cfg.model.model_copy(update={"name_or_path": resume_dir}) if resume_dir else cfg.model
        )
        unwrapped = task.build_model(source)
        # One in-process rank has no process group: DDP and Train's `prepare_model` (which
        # calls the Tune-refused `ray.train.get_context`) are for worker groups.
        model: Any = (  # DDP's `no_sync` below
            ray.train.torch.prepare_model(unwrapped)
            if session.is_distributed()
            else unwrapped.to(device)
        )
        optimizer = build_optimizer(unwrapped, cfg.optimizer)
        tracker = ImprovementTracker.watching(t.monitor)
        pos = LoopPosition()
        torch.manual_seed(t.seed * 1000 + rank + 1)  # dropout differs between ranks
        if resume_dir:
            pos, tracker_state = load_training_state(Path(resume_dir), rank, optimizer, scaler)
            tracker.load_state_dict(tracker_state)
            # More ranks than at the save make shorter epochs: one may be over already.
            pos.advance(0, plan.batches_per_epoch, steps=0)
    evaluate_on = SplitEvaluator(unwrapped, task, t.batch_size, rank, world, device, autocast)
    save_model = functools.partial(task.save, unwrapped)
    save = functools.partial(save_checkpoint, rank, save_model, optimizer, scaler)

    model.train()
    window = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, rows, seconds
    if own is None and checkpoint is not None and pos.step >= plan.total_steps:
        # Started from another run's final checkpoint (PBT copying a trial that had ended):
        # nothing is left to train, but the run still reports the model it holds, once.
        lr = lr_at(pos.step, tracker.lr_scale)
        evaluate_and_report(
            _train_metrics(window, lr, pos.step, plan.steps_per_epoch),
            evaluate_on,
            save,
            pos,
            tracker,
            cfg,
            plan,
        )
    while pos.step < plan.total_steps and not pos.stopped:
        start = pos.batches_done
        group = batches_of(pos.epoch)[start : start + t.grad_accum_steps]
        tick = time.perf_counter()
        for i, rows in enumerate(group):
            # The batch's identity seeds its augmentation (images), so a resume redraws it.
            key = (t.seed, pos.epoch, start + i, rank)
            prepared = task.batch("train", rows, train=True, key=key)
            batch = {k: v.to(device, non_blocking=True) for k, v in prepared.items()}
            labels = batch.pop("labels")  # the task's: ids, class probabilities, targets
            # Gradients are all-reduced once per step, on its last micro-batch.
            last = i == len(group) - 1
            sync = contextlib.nullcontext() if last or world == 1 else model.no_sync()
            with sync, autocast():
                logits = task.logits(model, batch)
                loss = task.loss(logits.float(), labels)
                # An epoch's short last group averages over the micro-batches it has.
                scaler.scale(loss / len(group)).backward()
            # Summed on the device: reading the loss here would sync with the GPU every batch.
            window[0] += loss.detach().double() * len(rows)
            window[1] += len(rows)

        lr = lr_at(pos.step, tracker.lr_scale)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        scaler.unscale_(optimizer)  # fp16: clip the true gradients, not the scaled ones
        if cfg.optimizer.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        pos.advance(len(group), plan.batches_per_epoch)
        window[2] += time.perf_counter() - tick

        if plan.evaluates_at(pos.step):
            train_metrics = _train_metrics(window, lr, pos.step, plan.steps_per_epoch)
            evaluate_and_report(train_metrics, evaluate_on, save, pos, tracker, cfg, plan)
            window.zero_()


_PREFIXES = {"validation": "val_", "test": "test_"}


@dataclass(frozen=True)
class SplitEvaluator:
    """Evaluates the unwrapped model on a named split: each rank its own shard, the task's
    metrics reduced over every rank (see `trainables.metrics`)."""

    model: torch.nn.Module
    task: Task
    batch_size: int
    rank: int
    world: int
    device: torch.device
    autocast: Callable[[], Any]

    @property
    def splits(self) -> dict[str, int]:
        return self.task.splits

    def __call__(self, split: str) -> dict[str, float]:
        """The task's metrics of `split`, keyed `val_*` or `test_*`."""
        batches = task_eval_iter(self.task, split, self.batch_size, self.rank, self.world)
        return evaluate(
            self.model,
            batches,
            self.task.metric_state(self.device),
            self.device,
            self.autocast,
            _PREFIXES[split],
            self.task.logits,
        )


def evaluate_and_report(
    metrics: dict[str, float],
    evaluate_on: SplitEvaluator,
    save: Callable[[Path, LoopPosition, dict], None],
    pos: LoopPosition,
    tracker: ImprovementTracker,
    job: FinetuneConfig,
    plan: Plan,
) -> None:
    """One evaluation point: evaluate, decide on stopping and the LR, checkpoint, report.

    Adds validation metrics to `metrics` (and test metrics to the run's last report, when there
    is a test split), updates `tracker` (the plateau schedule's LR cut, early stopping into
    `pos.stopped`), then reports with this rank's part of a checkpoint.

    Args:
        metrics: The training metrics since the last report (`_train_metrics`).
        evaluate_on: Evaluates a named split.
        save: Writes this rank's part of a checkpoint of `pos` and the tracker state into a
            folder (`save_checkpoint` with the rank, the task's model saver, optimizer and
            scaler bound).
        pos: The loop's position, already moved past the step just taken.
        tracker: The improvement tracker of `job.training.monitor`.
        job: The job's config.
        plan: The job's plan.
    """
    metrics |= evaluate_on("validation")
    tracker.update(metrics[job.training.monitor])
    s, since = job.schedule, tracker.evals_since_best
    if s.name == "reduce_on_plateau" and since and since % s.plateau_patience == 0:
        tracker.lr_scale *= s.plateau_factor
    patience = job.training.early_stopping_patience
    pos.stopped = bool(patience and since >= patience)
    if (pos.stopped or pos.step >= plan.total_steps) and "test" in evaluate_on.splits:
        metrics |= evaluate_on("test")
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder), pos, tracker.state_dict())
        session.report(metrics, ray.train.Checkpoint.from_directory(folder), persist_checkpoint)


def _train_metrics(
    window: torch.Tensor, lr: float, step: int, steps_per_epoch: int
) -> dict[str, float]:
    """Training loss and throughput since the last report, summed over every rank."""
    loss_sum, rows, _ = all_reduce_sum(window.clone()).tolist()
    seconds = window[2].item()  # each rank's own wall time; ranks run in lockstep under DDP
    return {
        "train_loss": loss_sum / rows if rows else math.nan,  # nan: no step since
        "learning_rate": lr,
        "epoch": step / steps_per_epoch,
        "step": step,
        "samples_per_second": rows / seconds if seconds > 0 else 0.0,
        # Training-step wall time since the last report: what a sweep's utilisation counts.
        "step_seconds": seconds,
    }
