"""`asha`: asynchronous successive halving; trials stop at rungs grace * eta^k evaluations."""

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.running.schedulers.base import on_evaluations, register
from sweeps.spec import SchedulerSpec


@register("asha")
def asha(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return ASHAScheduler(
        **on_evaluations(metric, mode),
        max_t=max(max_t, spec.grace_period),
        grace_period=spec.grace_period,
        reduction_factor=spec.reduction_factor,
    )
