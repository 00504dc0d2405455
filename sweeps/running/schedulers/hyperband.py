"""`hyperband`: synchronous successive halving over several brackets."""

from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import SchedulerSpec


@register("hyperband")
def hyperband(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    return HyperBandScheduler(
        **context.on_evaluations(),
        max_t=context.max_t,
        reduction_factor=spec.reduction_factor,
    )
