"""The sweep's own Tune callbacks beside the results file and progress line: W&B streaming,
promotion whenever a trial reports a better checkpoint, and a stop when the storage is full."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweeps.errors import PromotionError, StorageError
from sweeps.results.results_log import ResultsLog
from sweeps.results.tune_results import Planned
from sweeps.results.wandb_runs import resolve_mode
from sweeps.results.wandb_stream import StreamConfig, WandbStreamer
from sweeps.results.wandb_sweep import RECORD_FILE, SweepRegistration, wandb_sweep_config
from sweeps.spec import ResolvedJob, SweepSpec
from sweeps.store.model_versions import Promotion
from sweeps.store.storage import Location
from trainables.checkpointing import NO_SPACE
from trainables.objective import Objective

logger = logging.getLogger(__name__)


class PromoteOnImprovement(Callback):
    """Promotes whenever a trial reports a checkpoint better than the last one promoted.

    Args:
        objective: What "better" means for promotion.
        results: The sweep's results log (promotion reads what it writes; it must be called
            back before this).
        promote: Promotes the sweep's best checkpoint (picklable: Tune saves callbacks).
    """

    def __init__(
        self,
        objective: Objective,
        results: ResultsLog,
        promote: Callable[[], Promotion | None],
    ) -> None:
        self.objective, self.results, self.promote = objective, results, promote
        self.best: float | None = None

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        value = self.objective.value_of(result)
        if not result.get("checkpoint_path") or not self.objective.better(value, self.best):
            return
        # Promotion reads the results with their journal, where the results log (called back
        # first) has put this report.
        try:
            log_promotion(self.promote(), self.objective.metric)
        except PromotionError as exc:  # the end of the sweep tries again
            logger.warning("promotion failed: %s", exc)
            return
        self.best = value


class StopOnFullStorage(Callback):
    """Ends the sweep with a `StorageError` when a trial fails because its storage is full.

    Tune would retry the trial, which fails again at its next checkpoint, and so on through its
    retries and every other trial: a full disk does not empty itself. The experiment stops as a
    killed driver would, so the same command resumes every unfinished trial from its last
    checkpoint once there is space.

    Args:
        storage_path: The sweep's storage, named in the error.
    """

    def __init__(self, storage_path: str) -> None:
        self.storage_path = storage_path
        # Tune wraps a callback's exception in a TuneError holding only its text: the runner
        # raises this one instead.
        self.error: StorageError | None = None

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def _check(self, trial: Any) -> None:
        if self.error is not None:  # stopping already; Tune's clean-up ends the other trials
            return
        # Tune appends each failure's text to the trial's local error file before calling back.
        try:
            failures = Path(trial.error_file).read_text(errors="replace")
        except (OSError, TypeError):  # no error file (no local trial folder)
            return
        last = failures.rsplit("Failure # ", 1)[-1]
        if NO_SPACE in last:
            line = next(line for line in last.splitlines() if NO_SPACE in line)
            self.error = StorageError(
                f"storage_path: {self.storage_path} is full: trial {trial.trial_id} failed "
                f"with {line.strip()!r}. Free space (or point storage_path elsewhere and copy "
                "the sweep's folder there) and run the same command: the sweep resumes."
            )
            raise self.error


def log_promotion(done: Promotion | None, metric: str) -> None:
    """One line on what a promotion did."""
    if done is None:
        logger.info("nothing to promote: no checkpoint with a finite %s", metric)
    elif done.created:
        logger.info("promoted trial %s to %s", done.manifest["trial_id"], done.location)
    else:
        logger.info("already promoted: %s holds this checkpoint", done.location)


def wandb_streamer(
    spec: SweepSpec,
    planned: Planned | None,
    folder: Location,
    logged_steps: Callable[[], dict[str, int]] | None = None,
) -> WandbStreamer | None:
    """The sweep's W&B callback, or None when W&B is disabled.

    `logged_steps` gives each trial's last step already reported by earlier drivers of the
    sweep (`ResultsLog.last_steps`), which a resumed trial's run does not log again.
    """
    mode, note = resolve_mode(spec.wandb.mode)
    if mode == "disabled":
        return None
    # W&B writes run files locally: beside the sweep on local storage, else ./wandb.
    directory = spec.wandb.dir or (folder.path if folder.is_local else ".")
    if note:
        logger.info("%s; run files go to %s/wandb", note, directory)
    # W&B gives sweep ids on its server: offline runs cannot join a W&B sweep.
    register = (
        SweepRegistration(
            wandb_sweep_config(spec),
            spec.wandb.project,
            spec.wandb.entity,
            folder.join(RECORD_FILE),
        )
        if mode == "online"
        else None
    )
    return WandbStreamer(
        StreamConfig(
            sweep=spec.name,
            mode=mode,
            directory=directory,
            wandb=spec.wandb,
            objective=spec.objective,
            job_config=ResolvedJob(spec.job),
            planned=planned,
            sweep_config={
                "sweep": spec.name,
                "search": spec.search.model_dump(mode="json", exclude_none=True),
                "scheduler": spec.scheduler.model_dump(mode="json", exclude_none=True),
            },
            register_sweep=register,
            logged_steps=logged_steps,
        )
    )
