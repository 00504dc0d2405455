"""`fifo`: every trial runs to the end."""

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import SchedulerSpec


@register("fifo")
def fifo(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    return FIFOScheduler()
