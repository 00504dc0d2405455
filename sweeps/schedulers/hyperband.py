"""`hyperband`: synchronous successive halving over several brackets."""

from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

from sweeps.schedulers.base import TIME_ATTR, register
from sweeps.spec import SchedulerSpec


@register("hyperband")
def hyperband(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return HyperBandScheduler(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        max_t=max_t,
        reduction_factor=spec.reduction_factor,
    )
