"""`hyperband`: synchronous successive halving over several brackets."""

from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

from sweeps.running.schedulers.base import on_evaluations, register
from sweeps.spec import SchedulerSpec


@register("hyperband")
def hyperband(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return HyperBandScheduler(
        **on_evaluations(metric, mode),
        max_t=max_t,
        reduction_factor=spec.reduction_factor,
    )
