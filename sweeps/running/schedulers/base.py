"""The scheduler seam: a name -> factory registry of Ray Tune trial schedulers.

Time is counted in evaluations (`training_iteration`: one per report of a trial).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.tune.schedulers import TrialScheduler

from sweeps.running.registry import Registry
from sweeps.spec import Param, SchedulerSpec
from trainables.objective import Objective

TIME_ATTR = "training_iteration"


@dataclass(frozen=True)
class SchedulerContext:
    """What a scheduler needs beside its own section of the spec.

    Attributes:
        objective: The target metric and direction.
        max_t: The most evaluations one trial can report (the horizon).
        space: The search space (PBT explores within it).
        fixed: The job's own values, dotted (conditions of the space may name them).
        seed: The search's seed (PBT's exploration draws from it).
    """

    objective: Objective
    max_t: int
    space: dict[str, Param] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def on_evaluations(self) -> dict[str, str]:
        """The arguments every Tune scheduler takes: its clock (evaluations) and its target."""
        target = self.objective
        return {"time_attr": TIME_ATTR, "metric": target.metric, "mode": target.mode}


SchedulerFactory = Callable[[SchedulerSpec, SchedulerContext], TrialScheduler]
_REGISTRY: Registry[SchedulerFactory] = Registry("scheduler")
#: Registers `(spec, context) -> TrialScheduler` under a scheduler name (a decorator).
register = _REGISTRY.register


def make_scheduler(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    """The configured scheduler; `spec.max_t`, when given, overrides the context's horizon."""
    if spec.max_t:
        context = dataclasses.replace(context, max_t=spec.max_t)
    return _REGISTRY[spec.name](spec, context)


def schedulers() -> list[str]:
    """The registered scheduler names."""
    return _REGISTRY.names()
