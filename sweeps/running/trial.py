"""The per-trial driver: one Tune trial runs one fine-tuning job.

The driver only turns the trial's sampled values into a job and its inputs (`TrialInputs`: the
checkpoint Tune restores the trial with, the tokens the sweep prepared) and runs it; the loop
reports through the reporter it is handed, and knows nothing of Tune. A one-worker job runs its
loop in the trial's own process (`trainables/in_process.py`: no Train controller or worker
processes to start, the trial holds the worker's resources); a job of more workers builds and
fits a `TorchTrainer`. Two ways the reports reach Tune:

- `TuneReportCallback` (Ray's own): metrics and the Train checkpoint's path. Tune holds no
  checkpoint of the trial; a retried trial resumes from its Train run's latest checkpoint.
- Under PBT, Tune must hold checkpoints to hand from one trial to another (exploit). Train's
  reports then come to this driver (`ForwardReports`, or straight from an in-process loop),
  which reports each to Tune *with* its checkpoint. A trial that Tune starts from a
  checkpoint (an exploit, or a retry) runs a new Train run that starts from it
  (`TrialInputs.start_from`); the first report after an exploit names the trial it copied and that
  trial's step (`exploited_from`, `exploit_step`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import ray.tune
from ray.train.v2.api.callback import UserCallback
from ray.tune import PlacementGroupFactory
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.queue import Queue

from sweeps.results.results_file import EXPLOIT_STEP, EXPLOITED_FROM
from sweeps.spec import apply_params
from sweeps.store.storage import Location
from trainables.config import FinetuneConfig
from trainables.in_process import run_in_process, runs_in_process
from trainables.inputs import TrialInputs
from trainables.ray_compat import checkpoint_path_key
from trainables.trainer import build_trainer, worker_resources

# Who wrote a checkpoint Tune holds, and at which step (Ray's checkpoint metadata).
_ORIGIN = "sweeps_origin"
# Where `TuneReportCallback` puts a report's checkpoint path (this driver does the same).
CHECKPOINT_PATH_KEY = checkpoint_path_key()


def make_trial_driver(
    base_job: FinetuneConfig,
    folder: Location,
    max_failures: int = 0,
    checkpoints_to_tune: bool = False,
    in_process: bool = False,
    prepared_data: str | None = None,
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable that runs one fine-tuning job per trial.

    Args:
        base_job: The sweep's job before the trial's parameters.
        folder: The sweep's folder; each trial's Train run lives under `train/<trial id>`.
        max_failures: Worker-group restarts inside a trial. 0 by default: Tune retries a
            failed trial instead (resuming its Train run from the latest checkpoint), because a
            Train controller that is restarting its worker group when Tune stops the trial
            (ASHA) creates a placement group after it dies, which nobody removes: it held the
            CPUs of every later trial on the laptop sweep here.
        checkpoints_to_tune: Report every checkpoint to Tune (what PBT exploits), and start
            from the checkpoint Tune restores the trial with.
        in_process: Run one-worker jobs' loops in the trial's own process
            (`trainables/in_process.py`); the trial must then hold the worker's resources
            (`trial_resources` with the same flag).
        prepared_data: Where the sweep tokenized its data for every trial
            (`trainables/prepared.py`), if it did.
    """

    def run_trial(params: dict[str, Any]) -> None:
        trial_id = ray.tune.get_context().get_trial_id()
        start = ray.tune.get_checkpoint() if checkpoints_to_tune else None
        start_uri = folder.at(start.path).uri if start is not None else None
        # A restored trial keeps its id, so its Train run resumes from its own checkpoints;
        # one started from a Tune checkpoint gets a run of its own, named by that checkpoint.
        run_name = trial_id
        if start_uri is not None:
            run_name += "-" + hashlib.sha1(start_uri.encode()).hexdigest()[:8]
        job = apply_params(base_job, params, name=trial_id, source=f"trial {trial_id}")
        inputs = TrialInputs(start_from=start_uri, prepared_data=prepared_data)
        origin = (start.get_metadata().get(_ORIGIN) if start is not None else None) or {}
        lineage = {}
        if origin.get("trial_id") not in (None, trial_id):
            lineage = {EXPLOITED_FROM: origin["trial_id"], EXPLOIT_STEP: origin["step"]}
        to_tune = _TuneReports(folder, trial_id, checkpoints_to_tune, lineage)
        runs = folder.join("train").uri
        if in_process and runs_in_process(job):
            on_report = lambda m, c: to_tune(m, c.path if c is not None else None)  # noqa: E731
            run_in_process(job, inputs, run_name=run_name, storage_path=runs, on_report=on_report)
            return
        if not checkpoints_to_tune:
            callbacks: list[Any] = [TuneReportCallback()]
            build_trainer(
                job,
                inputs,
                run_name=run_name,
                storage_path=runs,
                callbacks=callbacks,
                max_failures=max_failures,
            ).fit()
            return
        reports: Queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        trainer = build_trainer(
            job,
            inputs,
            run_name=run_name,
            storage_path=runs,
            callbacks=[ForwardReports(reports)],
            max_failures=max_failures,
        )
        _relay(trainer.fit, reports, to_tune)

    return run_trial


def trial_resources(
    base_job: FinetuneConfig, in_process: bool, driver: dict[str, float]
) -> Callable[[dict[str, Any]], PlacementGroupFactory]:
    """What a trial's own process holds, for its params (Tune's `with_resources`).

    A trial that runs its loop in-process holds its worker's resources. One that runs a
    `TorchTrainer` holds `driver` (the spec's `driver_resources`) and a token of memory: Tune
    refuses an empty request, and its Train workers hold the CPUs.
    """

    def of(params: dict[str, Any]) -> PlacementGroupFactory:
        job = apply_params(base_job, params)
        if in_process and runs_in_process(job):
            return PlacementGroupFactory([worker_resources(job.scaling)])
        return PlacementGroupFactory([{"CPU": 0, "memory": 1 << 20, **driver}])

    return of


class _TuneReports:
    """Reports a Train report to Tune: metrics and the checkpoint's path (what
    `TuneReportCallback` sends), or under PBT the checkpoint itself, marked with the trial and
    step that wrote it, and the first report after an exploit naming the trial it copied."""

    def __init__(
        self, folder: Location, trial_id: str, with_checkpoint: bool, lineage: dict[str, Any]
    ) -> None:
        self.folder, self.trial_id, self.with_checkpoint = folder, trial_id, with_checkpoint
        self.lineage = lineage

    def __call__(self, metrics: dict[str, Any], checkpoint_path: str | None) -> None:
        metrics = metrics | ({CHECKPOINT_PATH_KEY: checkpoint_path} if checkpoint_path else {})
        if not self.with_checkpoint:
            ray.tune.report(metrics)
            return
        checkpoint = None
        if checkpoint_path:
            fs = self.folder.at(checkpoint_path).filesystem()[0]
            checkpoint = ray.tune.Checkpoint(checkpoint_path, filesystem=fs)
            origin = {"trial_id": self.trial_id, "step": metrics["step"]}
            checkpoint.update_metadata({_ORIGIN: origin})
        ray.tune.report(metrics | self.lineage, checkpoint=checkpoint)
        self.lineage = {}


class ForwardReports(UserCallback):
    """Hands each of Train's reports (metrics and checkpoint path) to the trial's driver."""

    def __init__(self, reports: Queue) -> None:
        self.reports = reports

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        # Rank 0's metrics: the loop reduces every metric over the ranks before reporting.
        item = dict(metrics[0])
        if checkpoint is not None:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self.reports.put(item)


_DONE = "__fit_done__"


def _relay(
    fit: Callable[[], Any], reports: Queue, to_tune: Callable[[dict[str, Any], str | None], None]
) -> None:
    """Runs `fit` on a thread and hands each forwarded report to `to_tune`."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fit()
        except BaseException as exc:  # re-raised on the trial's own thread below
            failure.append(exc)
        finally:
            reports.put({_DONE: True})

    # A daemon: when Tune stops the trial, the actor goes and takes the Train run with it.
    thread = threading.Thread(target=run, name="train-fit", daemon=True)
    thread.start()
    while not (item := reports.get()).get(_DONE):
        to_tune(item, item.pop(CHECKPOINT_PATH_KEY, None))
    thread.join()
    if failure:
        raise failure[0]
