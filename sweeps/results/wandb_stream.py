"""Streams a sweep to Weights & Biases from the sweep's driver: one W&B run per trial, one for
the sweep.

Each trial's run is named and identified from the sweep name and trial id, so a retried or
resumed trial continues its own run (`resume="allow"`); it is grouped by sweep, its config is the
trial's resolved job, every report is a history row at the loop's optimizer step, and its
summary holds the final and best metrics. Logging happens once per trial, on the driver, never
from DDP ranks. All W&B calls run on one background thread: a slow, failing or unreachable W&B
costs a warning, never the sweep, and the sweep's end waits for W&B at most `finish_timeout_s`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from sweeps.results.results_file import EXPLOITED_FROM
from sweeps.results.tune_results import TUNE_KEYS, Planned, params_at, stopped_by_tune
from sweeps.results.wandb_runs import (
    SERVICE_TEARDOWN_S,
    Mode,
    init_run,
    redact,
    release_wandb,
    run_id,
)
from sweeps.spec import WandbSpec
from trainables.objective import Objective

logger = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class StreamConfig:
    """What a `WandbStreamer` logs and where.

    Attributes:
        sweep: The sweep's name (run ids, names and the default group derive from it).
        mode: online or offline (see `resolve_mode`).
        directory: Where W&B keeps run files (`<directory>/wandb/`).
        wandb: The spec's W&B section (project, entity, group, tags, timeouts).
        objective: The target metric and direction (each run's `best_<metric>` summary).
        job_config: Trial params -> the trial's resolved job, flat and dotted (picklable).
        planned: Trial params -> the step its job ends at unless stopped early (picklable).
        sweep_config: What the sweep-level run records as its config (method, space, ...).
        register_sweep: Online: returns the id of the sweep registered with W&B (see
            `sweeps.results.wandb_sweep`), called once; each trial's run joins it.
        logged_steps: Returns each trial's last step that an earlier driver of this sweep
            logged (a sweep resumed after its driver died); called once, before the first
            run starts. A trial resumed from its checkpoint then logs no step twice.
    """

    sweep: str
    mode: Mode
    directory: str
    wandb: WandbSpec
    objective: Objective
    job_config: Callable[[dict[str, Any]], dict[str, Any]]
    planned: Planned | None
    sweep_config: dict[str, Any]
    register_sweep: Callable[[], str] | None = None
    logged_steps: Callable[[], dict[str, int]] | None = None


class WandbStreamer(Callback):
    """A Tune callback that mirrors every trial into W&B (see the module docstring).

    Args:
        config: What to log and where.
    """

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._runs: dict[str, Any] = {}
        self._trials: dict[str, dict[str, Any]] = {}
        self._broken = False
        self._sweep_id: str | None = None
        self._registered = False
        self._earlier_steps: dict[str, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}  # threads and open runs are not part of the sweep's state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    # Tune's side: only enqueue, never wait on W&B.

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._earlier_steps is None and self.config.logged_steps is not None:
            # Read here, on Tune's thread, before this driver's first result can reach the
            # results file: what it holds then is what earlier drivers logged.
            try:
                self._earlier_steps = self.config.logged_steps()
            except OSError as exc:
                logger.warning("earlier W&B steps unknown (%s): a resumed trial may repeat", exc)
                self._earlier_steps = {}
        self._put("start", trial.trial_id, dict(trial.config))

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        metrics = {
            k: v
            for k, v in result.items()
            if k not in TUNE_KEYS
            and k not in ("training_iteration", "timestamp")  # W&B keeps its own _timestamp
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        }
        step = int(result.get("step", result.get("training_iteration", 0)))
        self._put("log", trial.trial_id, params_at(result, trial), metrics, step, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._put("finish", trial.trial_id, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._put("finish", trial.trial_id, "ERROR")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        statuses = {t.trial_id: t.status for t in trials}
        self._put("sweep", statuses)
        self._queue.put(_STOP)
        if self._thread is not None:
            deadline = time.monotonic() + self.config.wandb.finish_timeout_s
            self._thread.join(self.config.wandb.finish_timeout_s)
            hung = self._thread.is_alive()
            if hung:
                logger.warning(
                    "W&B did not finish within %.0f s; the sweep's own results are complete, "
                    "W&B may miss its last rows",
                    self.config.wandb.finish_timeout_s,
                )
            # Online, the service goes on uploading after the runs finish: what is left of
            # the same budget bounds that too (a hung or failing server would hold the
            # process at exit).
            if hung or self._broken or self.config.mode == "online":
                release_wandb(max(deadline - time.monotonic(), SERVICE_TEARDOWN_S))

    def _put(self, *event: Any) -> None:
        if self.config.mode == "disabled" or self._broken:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="wandb-stream", daemon=True)
            self._thread.start()
        self._queue.put(event)

    # The W&B side: one thread, every call guarded.
    def _work(self) -> None:
        while (event := self._queue.get()) is not _STOP:
            if self._broken:
                continue
            try:
                getattr(self, f"_{event[0]}")(*event[1:])
            except Exception as exc:
                self._broken = True
                logger.warning("W&B logging stopped (%s); the sweep goes on without it", exc)

    def _init(self, name: str, run: str, config: dict[str, Any], job_type: str, **more: Any) -> Any:
        c = self.config
        return init_run(
            c.wandb,
            c.sweep,
            run,
            c.mode,
            c.directory,
            name=name,
            job_type=job_type,
            config=redact(config),
            tags=list(c.wandb.tags),
            console="off",
            save_code=False,
            disable_git=True,
            x_disable_stats=True,
            **more,
        )

    def _sweep_settings(self) -> dict[str, Any]:
        """`sweep_id` for a trial's run once the sweep is registered; nothing if it cannot be."""
        if not self._registered and self.config.register_sweep is not None:
            self._registered = True
            try:
                self._sweep_id = self.config.register_sweep()
            except Exception as exc:
                logger.warning("W&B sweep not registered (%s); trial runs go on without it", exc)
        return {"sweep_id": self._sweep_id} if self._sweep_id else {}

    def _start(self, trial_id: str, params: dict[str, Any]) -> None:
        if trial_id in self._runs:
            return  # a retried trial goes on logging into its run
        sweep = self.config.sweep
        config = self.config.job_config(params) | {"sweep": sweep, "trial_id": trial_id}
        self._runs[trial_id] = self._init(
            f"{sweep}/{trial_id}",
            run_id(sweep, trial_id),
            config,
            "trial",
            **self._sweep_settings(),
        )
        last = (self._earlier_steps or {}).get(trial_id, -1)
        self._trials.setdefault(trial_id, {"params": params, "reports": 0, "last_step": last})

    def _log(
        self,
        trial_id: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        step: int,
        result: dict[str, Any],
    ) -> None:
        self._start(trial_id, params)
        state = self._trials[trial_id]
        run = self._runs[trial_id]
        exploited = result.get(EXPLOITED_FROM)
        if result.get("done"):
            state["stopped_early"] = stopped_by_tune(result, params, self.config.planned)
        if step <= state["last_step"]:
            if not exploited:
                return  # a trial resumed from a checkpoint repeats a step W&B already has
            # A PBT trial that copied a donor behind it: W&B's steps only go up, so the row
            # goes on the run's next step (the loop's own step is in the row as `step`).
            step = state["last_step"] + 1
        if params != state["params"]:
            # PBT changed the trial's hyperparameters: the run's config follows, and the
            # change is a history row at the step it took effect.
            changed = {k: v for k, v in params.items() if state["params"].get(k) != v}
            run.config.update(redact(changed), allow_val_change=True)
            metrics = metrics | {f"config/{k}": v for k, v in redact(changed).items()}
            state["params"] = params
        if exploited:
            metrics = metrics | {EXPLOITED_FROM: exploited}
        run.log(metrics, step=step)
        state["last_step"] = step
        # Counted here, not read from `training_iteration`: a retried trial restarts that at 1.
        state["reports"] += 1
        state["epochs"] = result.get("epoch")
        if self.config.objective.better(
            value := metrics.get(self.config.objective.metric), state.get("best")
        ):
            state["best"] = value

    def _finish(self, trial_id: str, status: str) -> None:
        run = self._runs.pop(trial_id, None)
        state = self._trials.setdefault(trial_id, {"params": {}, "reports": 0, "last_step": -1})
        state["status"] = status
        state.setdefault("stopped_early", False)
        if run is None:
            return
        run.summary[f"best_{self.config.objective.metric}"] = state.get("best")
        run.summary["status"] = status
        run.summary["stopped_early"] = state["stopped_early"]
        run.summary["reports"] = state["reports"]
        run.finish(exit_code=0 if status == "TERMINATED" else 1)

    def _sweep(self, statuses: dict[str, str]) -> None:
        import wandb

        c = self.config
        metric = c.objective.metric
        for trial_id in list(self._runs):
            self._finish(trial_id, statuses.get(trial_id, "UNFINISHED"))
        keys = sorted({k for s in self._trials.values() for k in s["params"]})
        columns = [
            "trial_id",
            "status",
            f"best_{metric}",
            "reports",
            "epochs",
            "stopped_by_scheduler",
            *keys,
        ]
        table = wandb.Table(columns=columns)
        best_id, best_value = None, None
        for trial_id, state in sorted(self._trials.items()):
            value = state.get("best")
            table.add_data(
                trial_id,
                statuses.get(trial_id, state.get("status")),
                value,
                state["reports"],
                state.get("epochs"),
                state.get("stopped_early", False),
                *[_cell(state["params"].get(k)) for k in keys],
            )
            if c.objective.better(value, best_value):
                best_id, best_value = trial_id, value
        run = self._init(f"{c.sweep} (sweep)", run_id(c.sweep, "sweep"), c.sweep_config, "sweep")
        run.log({"trials": table})
        run.summary["best_trial_id"] = best_id
        run.summary[f"best_{metric}"] = best_value
        run.summary["trial_count"] = len(self._trials)
        run.finish()


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
