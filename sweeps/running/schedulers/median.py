"""`median`: stop a trial whose best result falls below the median of others at that time."""

from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

from sweeps.running.schedulers.base import on_evaluations, register
from sweeps.spec import SchedulerSpec


@register("median")
def median(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return MedianStoppingRule(
        **on_evaluations(metric, mode),
        grace_period=spec.grace_period,
        min_samples_required=2,
    )
