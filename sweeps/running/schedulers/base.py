"""The scheduler seam: a name -> factory registry of Ray Tune trial schedulers.

Time is counted in evaluations (`training_iteration`: one per report of a trial).
"""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.schedulers import TrialScheduler

from sweeps.spec import SchedulerSpec

SchedulerFactory = Callable[[SchedulerSpec, str, str, int], TrialScheduler]
_REGISTRY: dict[str, SchedulerFactory] = {}
TIME_ATTR = "training_iteration"


def register(name: str) -> Callable[[SchedulerFactory], SchedulerFactory]:
    """Registers `(spec, metric, mode, max_t) -> TrialScheduler` under a scheduler name."""

    def wrap(factory: SchedulerFactory) -> SchedulerFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def make_scheduler(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    """The configured scheduler; `max_t` is the most evaluations a trial can report."""
    return _REGISTRY[spec.name](spec, metric, mode, spec.max_t or max_t)


def on_evaluations(metric: str, mode: str) -> dict[str, str]:
    """The arguments every Tune scheduler takes: its clock (evaluations) and its target."""
    return {"time_attr": TIME_ATTR, "metric": metric, "mode": mode}


def schedulers() -> list[str]:
    return sorted(_REGISTRY)
