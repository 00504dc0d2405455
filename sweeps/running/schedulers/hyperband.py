"""`hyperband`: Hyperband's brackets, run asynchronously (ASHA over several brackets).

Hyperband hedges over how aggressively to stop: bracket s first compares trials after
eta^s evaluations, the last bracket stops nothing. Ray's synchronous `HyperBandScheduler` halves
a bracket only once all its trials are live at once (paused ones included), and a sweep keeps
only the trials that fit live (Tune cannot count a trial's Train workers, so the sweep caps
trials instead): on a laptop that fits one trial, no bracket that stops trials ever filled and
hyperband ran every trial to its end, random search at random's cost (bench/search_quality.py
printed random's figures for it). The asynchronous form (Li et al. 2020, "A System for Massively
Parallel Hyperparameter Tuning", section 3) promotes and stops at each rung as results arrive,
so its brackets work at any concurrency.
"""

import math

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import SchedulerSpec


@register("hyperband")
def hyperband(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    return AsyncHyperBandScheduler(
        **context.on_evaluations(),
        max_t=context.max_t,
        grace_period=1,
        reduction_factor=spec.reduction_factor,
        brackets=brackets(context.max_t, spec.reduction_factor),
    )


def brackets(max_t: int, reduction_factor: float) -> int:
    """Hyperband's bracket count for a horizon of `max_t` evaluations: one per rung depth,
    s = 0 .. floor(log_eta(max_t)) (a bracket whose first rung is past `max_t` stops nothing)."""
    return int(math.log(max_t) / math.log(reduction_factor) + 1e-9) + 1
