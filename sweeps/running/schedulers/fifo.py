"""`fifo`: every trial runs to the end."""

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.running.schedulers.base import register
from sweeps.spec import SchedulerSpec


@register("fifo")
def fifo(spec: SchedulerSpec, metric: str, mode: str, max_t: int) -> TrialScheduler:
    return FIFOScheduler()
