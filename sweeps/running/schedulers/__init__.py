"""Trial schedulers, one module each, behind `make_scheduler(spec, metric, mode, max_t)`."""

from sweeps.running.schedulers import asha, fifo, hyperband, median  # noqa: F401  (registration)
from sweeps.running.schedulers.base import TIME_ATTR, make_scheduler, schedulers

__all__ = ["TIME_ATTR", "make_scheduler", "schedulers"]
