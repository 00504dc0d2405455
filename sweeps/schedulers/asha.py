"""`asha`: asynchronous successive halving; trials stop at rungs grace * eta^k evaluations."""

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.schedulers.base import TIME_ATTR, register
from sweeps.spec import SchedulerSpec


@register("asha")
def asha(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max(max_t, spec.grace_period),
        grace_period=spec.grace_period,
        reduction_factor=spec.reduction_factor,
    )
