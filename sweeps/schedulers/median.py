"""`median`: stop a trial whose best result falls below the median of others at that time."""

from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

from sweeps.schedulers.base import TIME_ATTR, register
from sweeps.spec import SchedulerSpec


@register("median")
def median(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return MedianStoppingRule(
        time_attr=TIME_ATTR,
        metric=metric,
        mode=mode,
        grace_period=spec.grace_period,
        min_samples_required=2,
    )
