"""`median`: stop a trial whose best result falls below the median of others at that time."""

from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import SchedulerSpec


@register("median")
def median(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    return MedianStoppingRule(
        **context.on_evaluations(),
        grace_period=spec.grace_period,
        min_samples_required=2,
    )
