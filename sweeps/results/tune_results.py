"""Ray Tune's conventions for a trial's results, as the results file and the W&B stream read
them: which keys are Tune's bookkeeping, a report's parameters and loop step, and whether Tune
stopped the trial early."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Tune's bookkeeping in every result that is not a metric of the trial.
TUNE_KEYS = frozenset(
    {"config", "trial_id", "experiment_tag", "date", "hostname", "node_ip", "pid", "done"}
    | {"time_since_restore", "iterations_since_restore", "timesteps_since_restore"}
    | {"timesteps_total", "episodes_total", "experiment_id", "should_checkpoint"}
    | {"checkpoint_dir_name", "time_this_iter_s", "time_total_s"}
)


def params_at(result: dict[str, Any], trial: Any) -> dict[str, Any]:
    """The parameters a result was produced with: Tune's copy in the result, since a scheduler
    (PBT) may have changed the trial's config by the time callbacks see the result."""
    return dict(result.get("config") or trial.config)


#: A trial's params -> the loop step its job ends at unless something stops it early.
#: Picklable: Tune saves the callbacks holding one with the sweep's state.
Planned = Callable[[dict[str, Any]], int]


def step_of(result: dict[str, Any]) -> int:
    """The loop's step of a report (Tune's `training_iteration` for trainables without one).

    The step, not the iteration, identifies a report: a trial Tune retries from its checkpoint
    counts iterations from 1 again while its steps go on where the checkpoint left them.
    """
    step = result.get("step")
    return int(result.get("training_iteration", 0) if step is None else step)


def stopped_by_tune(
    result: dict[str, Any], params: dict[str, Any], planned: Planned | None
) -> bool:
    """Whether Tune stopped the trial at `result` before its plan's last step.

    Tune marks the result a scheduler (or stopper) decided STOP on with `done` before callbacks
    see it; a trial that ends by itself makes no further report (Tune hands only the scheduler a
    copy of its last one). A STOP at the plan's last step (ASHA stops what reaches `max_t`) is
    not early, nor is a trial that ended on its own early-stopping patience.
    """
    return bool(result.get("done")) and (planned is None or step_of(result) < planned(params))
