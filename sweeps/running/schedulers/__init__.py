"""Trial schedulers, one module each, behind `make_scheduler(spec, context)`."""

from sweeps.running.schedulers import asha, fifo, hyperband, median, pb2, pbt  # noqa: F401
from sweeps.running.schedulers.base import TIME_ATTR, SchedulerContext, make_scheduler, schedulers

__all__ = ["TIME_ATTR", "SchedulerContext", "make_scheduler", "schedulers"]
