"""A job's plan in optimizer steps: the one place its length and evaluation points are computed.

The per-worker loop follows it; the sweep reads it to size the scheduler's horizon and to know
how many reports a trial makes when nothing stops it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainables.config import FinetuneConfig


@dataclass(frozen=True)
class Plan:
    """How long a job trains and when it evaluates.

    Attributes:
        batches_per_epoch: Micro-batches each rank runs per epoch.
        steps_per_epoch: Optimizer steps per epoch (the last one may accumulate fewer batches).
        total_steps: Optimizer steps of the whole job.
        eval_every: Evaluate (report, checkpoint) every this many optimizer steps.
    """

    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int

    @property
    def evaluations(self) -> int:
        """Reports the job makes when nothing stops it early."""
        return math.ceil(self.total_steps / self.eval_every)

    def evaluates_at(self, step: int) -> bool:
        """Whether the loop evaluates once optimizer step `step` (1-based count) is done."""
        return step % self.eval_every == 0 or step >= self.total_steps


def plan_job(job: FinetuneConfig, train_rows: int, world_size: int | None = None) -> Plan:
    """The plan of `job` over `train_rows` training rows on `world_size` ranks (default: the
    job's own `scaling.num_workers`)."""
    t = job.training
    world = world_size or job.scaling.num_workers
    batches = math.ceil(train_rows / (t.batch_size * world))
    steps_per_epoch = math.ceil(batches / t.grad_accum_steps)
    total = t.max_steps or steps_per_epoch * t.epochs
    every = steps_per_epoch if t.eval_every == "epoch" else t.eval_every
    return Plan(batches, steps_per_epoch, total, every)
