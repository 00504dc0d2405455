"""The per-worker fine-tuning loop, for any task, on every DDP rank or as one rank on its own.

`run_loop(cfg, reporter, inputs)` reads top to bottom, like nanoGPT's train.py: data → plan →
model → optimizer → resume, then one `while` over optimizer steps: forward/backward over the
step's micro-batches (accumulating) → set the LR → clip → step → at every evaluation point
evaluate, report and checkpoint. Where it runs and where its reports go is the `reporter`'s
business (`trainables.reporter`); a `TorchTrainer` worker's entry point is
`trainables.trainer.train_fn_per_worker`. Batching, evaluation, the LR schedule and the step
arithmetic live in small functions beside it or in their own modules.
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
import ray.train.torch
import torch

from trainables.checkpointing import (
    LoopPosition,
    checkpoint_at,
    load_training_state,
    resumable_checkpoint,
    save_checkpoint,
)
from trainables.config import FinetuneConfig
from trainables.data import TokenizedSplit, collate, epoch_batches, eval_batches, shard_rows
from trainables.inputs import NO_INPUTS, TrialInputs
from trainables.metrics import all_reduce_sum, evaluate
from trainables.optim import ImprovementTracker, build_optimizer, lr_schedule
from trainables.plan import Plan, plan_job
from trainables.reporter import Reporter
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


def run_loop(cfg: FinetuneConfig, reporter: Reporter, inputs: TrialInputs = NO_INPUTS) -> None:
    """Fine-tunes one model as one rank; reports and checkpoints at every evaluation.

    Every run reports at least once: one that resumes with no step left from a checkpoint it
    did not write itself (another run's last) evaluates and reports the model it holds.

    Args:
        cfg: The job.
        reporter: This rank's link to its run: rank, world size, reports, what to resume from.
        inputs: What the run is handed beside its job (a checkpoint to start from, prepared
            tokens).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t = cfg.training
    rank, world = reporter.rank, reporter.world_size
    device = reporter.device
    autocast, scaler = precision_tools(t.precision, device)

    # Read, checked, tokenized or decoded: once per worker.
    task = prepare_task(cfg, prepared_data=inputs.prepared_data)
    n_train, lengths = task.splits["train"], task.lengths("train")
    grouped = lengths is not None and cfg.data.group_by_length
    lengths = lengths if lengths is not None else np.zeros(n_train, dtype=np.int64)
    plan = plan_job(cfg, n_train, world)
    lr_at = lr_schedule(cfg.optimizer.lr, cfg.schedule, plan.total_steps)

    @functools.lru_cache(maxsize=1)  # a pure function of the epoch: built on its first step only
    def batches_of(epoch: int) -> list[list[int]]:
        return epoch_batches(lengths, t.batch_size, world, rank, t.seed, epoch, grouped)

    # The run's own checkpoint (a restarted worker group) wins over the one it started from.
    own = resumable_checkpoint(reporter, t.checkpoints_to_keep)
    checkpoint = own or checkpoint_at(inputs.start_from)
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
            if reporter.distributed
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
    report = functools.partial(
        evaluate_and_report, evaluate_on, save, reporter, pos, tracker, cfg, plan
    )

    model.train()
    window = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, rows, seconds
    reported = own is not None  # a run's own checkpoint came with its report
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
            report(_train_metrics(window, lr, pos.step, plan.steps_per_epoch))
            reported = True
            window.zero_()

    if not reported:  # no step was left to take: the model the run holds, reported once
        lr = lr_at(pos.step, tracker.lr_scale)
        report(_train_metrics(window, lr, pos.step, plan.steps_per_epoch))


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
    evaluate_on: SplitEvaluator,
    save: Callable[[Path, LoopPosition, dict], None],
    reporter: Reporter,
    pos: LoopPosition,
    tracker: ImprovementTracker,
    job: FinetuneConfig,
    plan: Plan,
    metrics: dict[str, float],
) -> None:
    """One evaluation point: evaluate, decide on stopping and the LR, checkpoint, report.

    Adds validation metrics to `metrics` (and test metrics to the run's last report, when there
    is a test split), updates `tracker` (the plateau schedule's LR cut, early stopping into
    `pos.stopped`), then reports with this rank's part of a checkpoint.

    Args:
        evaluate_on: Evaluates a named split.
        save: Writes this rank's part of a checkpoint of `pos` and the tracker state into a
            folder (`save_checkpoint` with the rank, the task's model saver, optimizer and
            scaler bound).
        reporter: Where the report and the checkpoint folder go.
        pos: The loop's position, already moved past the step just taken.
        tracker: The improvement tracker of `job.training.monitor`.
        job: The job's config.
        plan: The job's plan.
        metrics: The training metrics since the last report (`_train_metrics`).
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
        reporter.report(metrics, Path(folder))


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
