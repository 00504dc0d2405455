"""Runs (or resumes) a sweep on Ray Tune: preflight, placement, the results file and callbacks,
the per-trial driver, the Tuner, and promotion at the end. Returns what happened; prints
nothing (the CLI does)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import ray
import ray.tune
from ray.tune import Callback

from sweeps.errors import SpecError, StorageError
from sweeps.results.confirmation import confirmed_best
from sweeps.results.progress import SweepProgress
from sweeps.results.queries import BestTrial, SweepResults
from sweeps.results.results_log import ResultsLog
from sweeps.results.summaries import TrialSummary, finished
from sweeps.results.wandb_stream import WandbStreamer
from sweeps.running.callbacks import (
    PromoteOnImprovement,
    StopOnFullStorage,
    log_promotion,
    wandb_streamer,
)
from sweeps.running.confirmation_stage import confirmation_stage
from sweeps.running.placement import Placement, extreme_jobs, max_evaluations, preflight
from sweeps.running.promotion import promote_best
from sweeps.running.resume import check_tune_state, is_resume, save_spec
from sweeps.running.trial import make_trial_driver, trial_resources
from sweeps.running.tuner import build_tuner
from sweeps.spec import PlannedSteps, SweepSpec
from sweeps.store import storage
from sweeps.store.model_versions import Promotion
from sweeps.store.storage import Location, tune_storage
from sweeps.store.trivial import read_trivial, write_trivial
from trainables.checkpointing import NO_SPACE_ERRNOS
from trainables.config import FinetuneConfig
from trainables.in_process import runs_in_process
from trainables.prepared import prepare_tokens
from trainables.ray_compat import restored_run_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepOutcome:
    """What a run of a sweep left behind.

    Attributes:
        best: The best trial by the sweep's objective and its checkpoint; None if no trial
            reported a finite target metric with a checkpoint.
        promotion: What the end-of-sweep promotion did, when the spec promotes.
        trials: Every trial as the results file tells it.
        planned_trials: Trials the spec asks for.
        wandb_offline_runs: A glob of the offline W&B run folders to `wandb sync`, if offline.
    """

    best: BestTrial | None
    promotion: Promotion | None
    trials: list[TrialSummary]
    planned_trials: int
    wandb_offline_runs: str | None = None

    @property
    def finished(self) -> bool:
        """Whether every planned trial ended (completed or errored)."""
        return finished(self.trials, self.planned_trials)


def run_sweep(
    spec: SweepSpec,
    restart: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: TextIO | None = None,
) -> SweepOutcome:
    """Runs (or resumes) a sweep: the search, then its confirmation stage if the spec has one.

    A sweep whose name exists under the storage path resumes: finished trials are not rerun.

    Args:
        spec: The sweep.
        restart: Discard an existing sweep of this name (and its confirmation) first.
        callbacks: More Tune callbacks (benchmarks' clocks, tests' probes).
        progress: Where a `SweepProgress` line goes on every change; None prints nothing.
            Tune's own trial table is always off.

    Raises:
        FinetuneError: on bad input (spec, data, model, resources, storage), before any trial.
    """
    # Before Ray starts: a sweep that could keep nothing must not begin.
    storage.check_storage(spec.storage_path, spec.promote.to if spec.promote else None)
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    placement = preflight(spec)
    results = SweepResults.of(spec)
    promote_on_improvement = bool(spec.promote and spec.promote.when == "improvement")
    streamer = _run_stage(spec, placement, restart, callbacks, progress, promote_on_improvement)
    if spec.search.confirm is not None:
        stage = confirmation_stage(spec, restart)
        if stage is not None:
            confirm, points = stage
            # `confirmation_stage` has already started a restarted stage afresh.
            trivial = read_trivial(results.folder)
            _run_stage(confirm, placement, False, callbacks, progress, False, points, trivial)

    promotion = promote_best(spec) if spec.promote else None
    if spec.promote:
        log_promotion(promotion, spec.promotion_objective.metric)
    offline = None
    if streamer is not None and streamer.config.mode == "offline":
        offline = f"{streamer.config.directory}/wandb/offline-run-*"
    return SweepOutcome(
        best=confirmed_best(spec),
        promotion=promotion,
        trials=results.trials(),
        planned_trials=spec.trials,
        wandb_offline_runs=offline,
    )


def _run_stage(
    spec: SweepSpec,
    placement: Placement,
    restart: bool,
    callbacks: Sequence[Callback],
    progress: TextIO | None,
    promote_on_improvement: bool,
    points: list[dict[str, Any]] | None = None,
    trivial: dict[str, Any] | None = None,
) -> WandbStreamer | None:
    """One Tune experiment of the sweep (the search, or the confirmation with its `points`),
    run or resumed to its end. Returns its W&B streamer, if it streams.

    The search stage scores the trivial predictor before its first trial (once: a resumed
    sweep reads it back); the confirmation stage is given the search's (`trivial`)."""
    results = SweepResults.of(spec)
    folder = results.folder
    try:
        if restart:
            storage.delete(folder)
        resuming = is_resume(folder, spec)
    except OSError as exc:
        raise SpecError(f"storage_path: cannot use {folder}: {exc}") from None

    prepared_data = _prepared_data(spec, folder)
    if trivial is None and points is None:
        trivial = _trivial_predictor(spec.job, prepared_data, folder)
    planned = PlannedSteps(spec.job, placement.train_rows)
    results_log = ResultsLog(results.uri, planned, train_runs=folder.join("train").uri)
    full = StopOnFullStorage(spec.storage_path)
    all_callbacks: list[Callback] = [full, results_log, *callbacks]
    streamer = wandb_streamer(spec, planned, folder, results_log.last_steps)
    if streamer is not None:
        all_callbacks.append(streamer)
    if promote_on_improvement:
        promote = functools.partial(promote_best, spec)
        all_callbacks.append(PromoteOnImprovement(spec.promotion_objective, results_log, promote))
    if progress is not None:
        all_callbacks.append(
            SweepProgress(
                spec.name, spec.objective, spec.trials, planned, progress, trivial=trivial
            )
        )

    # `driver_resources` pins trial drivers apart from their workers (e.g. to on-demand nodes,
    # so a spot reclaim never kills a trial's driver): such trials keep a `TorchTrainer`.
    in_process = not spec.driver_resources
    driver = ray.tune.with_resources(
        make_trial_driver(
            spec.job,
            folder,
            checkpoints_to_tune=spec.scheduler.evolves,
            in_process=in_process,
            prepared_data=prepared_data,
        ),
        trial_resources(spec.job, in_process, spec.driver_resources),
    )
    if resuming and ray.tune.Tuner.can_restore(*tune_storage(folder)):
        tuner = _restore(folder, driver, all_callbacks)
    else:
        save_spec(folder, spec)
        tuner = build_tuner(
            spec,
            driver,
            max_t=max_evaluations(spec, placement.train_rows),
            max_concurrent=placement.max_concurrent,
            storage=Location.of(spec.storage_path).uri,
            callbacks=all_callbacks,
            quiet=True,
            # A trial's process imports torch and the model libraries; when every trial runs
            # its loop in-process, later trials reuse it (not with a TorchTrainer inside: see
            # `build_tuner`).
            reuse_actors=in_process
            and all(runs_in_process(job) for _, job in extreme_jobs(spec, "scaling.")),
            points=points,
        )
    try:
        with tune_state_every(spec.trials):
            tuner.fit()
    except Exception as exc:
        if full.error is not None:  # Tune raises it as a TuneError holding its text
            raise full.error from None
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            # Tune's own state files on a full disk.
            raise StorageError(f"storage_path: {spec.storage_path} is full: {exc}") from exc
        raise
    return streamer


def _prepared_data(spec: SweepSpec, folder: Location) -> str | None:
    """Where the sweep's text is tokenized once for every trial and rank, under the sweep's
    folder (`trainables/prepared.py`; kept for a resumed sweep and the confirmation stage);
    None for data that is not prepared ahead."""
    try:
        return prepare_tokens(spec.job, folder.join("data").uri)
    except OSError as exc:
        raise StorageError(f"storage_path: cannot write {folder.uri}: {exc}") from None


def _trivial_predictor(
    job: FinetuneConfig, prepared_data: str | None, folder: Location
) -> dict[str, Any] | None:
    """The sweep's trivial predictor record (`trainables.trivial`), computed and stored
    beside its results the first time; None (with a warning) when it cannot be computed: the
    sweep runs without it rather than not at all."""
    try:
        stored = read_trivial(folder)
    except OSError as exc:
        raise StorageError(f"storage_path: cannot read {folder.uri}: {exc}") from None
    if stored is not None:
        return stored
    from trainables.trivial import trivial_figures

    try:
        record = trivial_figures(job, prepared_data)
    except Exception as exc:  # a baseline must never stop the sweep it describes
        logger.warning("the trivial predictor could not be scored: %s", exc)
        return None
    try:
        write_trivial(folder, record)
    except OSError as exc:
        raise StorageError(f"storage_path: cannot write {folder.uri}: {exc}") from None
    return record


@contextlib.contextmanager
def tune_state_every(trials: int) -> Iterator[None]:
    """While this holds, Tune saves its experiment state (the trials that exist, finished or
    not) at every turn of its loop, or every `trials / 100` seconds for a sweep of hundreds of
    trials, unless the user set the period (`TUNE_GLOBAL_CHECKPOINT_S`, read when `Tuner.fit`
    starts its controller).

    Tune's default is at most every 10 s. A driver killed in between loses the trials started
    since: the rerun samples them again under new ids and their runs are orphaned. A laptop
    sweep's trial can start and checkpoint within a second (the chaos test's SIGKILLed driver
    lost one so with a 1 s period). The state grows with the trials, so a big sweep saves it
    less often.
    """
    name = "TUNE_GLOBAL_CHECKPOINT_S"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(trials // 100)
    try:
        yield
    finally:
        del os.environ[name]


def _restore(folder: Location, driver: object, callbacks: list[Callback]) -> ray.tune.Tuner:
    check_tune_state(folder)
    path, filesystem = tune_storage(folder)
    tuner = ray.tune.Tuner.restore(path, driver, resume_errored=True, storage_filesystem=filesystem)
    # The saved experiment state holds the first run's callbacks; this run's replace them.
    run_config = restored_run_config(tuner)
    run_config.callbacks = list(callbacks)
    run_config.verbose = 0
    return tuner
