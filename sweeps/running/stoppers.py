"""Tune stoppers of a sweep: a trial whose target goes non-finite, and the GPU-hour budget."""

from __future__ import annotations

import math
from typing import Any

from ray.tune.stopper import CombinedStopper, Stopper

from sweeps.spec import SearchSpec
from trainables.config import ScalingConfig


class NonFiniteStopper(Stopper):
    """Stops a trial as soon as its target metric is NaN or infinite."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = result.get(self.metric)
        return isinstance(value, float) and not math.isfinite(value)

    def stop_all(self) -> bool:
        return False


class GpuHoursBudget(Stopper):
    """Ends the sweep once its trials have held `limit` GPU-hours in total.

    A trial holds its workers' GPUs for the wall time between its reports; GPUs per trial
    follow the trial's own scaling parameters when the space varies them.
    """

    def __init__(self, limit: float, scaling: dict[str, Any]) -> None:
        self.limit, self.scaling, self.used = limit, scaling, 0.0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        params = result.get("config") or {}
        workers = params.get("scaling.num_workers", self.scaling["num_workers"])
        gpus = params.get("scaling.gpus_per_worker", self.scaling["gpus_per_worker"])
        self.used += result.get("time_this_iter_s", 0.0) * workers * gpus / 3600
        return False

    def stop_all(self) -> bool:
        return self.used >= self.limit


def make_stopper(search: SearchSpec, scaling: ScalingConfig) -> Stopper:
    """Every stopper the search asks for, combined."""
    stoppers: list[Stopper] = [NonFiniteStopper(search.metric)]
    if search.gpu_hours_budget:
        stoppers.append(GpuHoursBudget(search.gpu_hours_budget, scaling.model_dump()))
    return CombinedStopper(*stoppers)
