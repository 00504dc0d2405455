"""`asha`: asynchronous successive halving; trials stop at rungs grace * eta^k evaluations."""

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import SchedulerSpec


@register("asha")
def asha(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    return ASHAScheduler(
        **context.on_evaluations(),
        max_t=max(context.max_t, spec.grace_period),
        grace_period=spec.grace_period,
        reduction_factor=spec.reduction_factor,
    )
