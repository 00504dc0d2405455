"""Runs a sweep on Ray Tune: preflight, resources, search + scheduler, resume, best trial."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
import ray.tune
import yaml
from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import CombinedStopper, Stopper

from sweeps import storage
from sweeps.errors import PromotionError, SpecError
from sweeps.progress import SweepProgress
from sweeps.promotion import Promotion, best_candidate, promote
from sweeps.results import RESULTS_FILE, ResultsLog, read_results, summarize
from sweeps.schedulers import make_scheduler
from sweeps.search import define_by_run, make_sampler
from sweeps.spec import SweepSpec, set_dotted
from sweeps.storage import Location
from sweeps.trial import job_for_trial, make_trial_driver
from sweeps.wandb_stream import WandbStreamer, resolve_mode
from trainables.config import FinetuneConfig, ScalingConfig, parse_config
from trainables.preflight import JobSummary, check_inputs, check_resources, cluster_nodes

SPEC_FILE = "sweep_spec.yaml"
# Knobs that change how many evaluations a trial reports.
_LENGTH_KEYS = (
    "training.batch_size",
    "training.epochs",
    "training.max_steps",
    "training.eval_every",
    "training.grad_accum_steps",
    "scaling.num_workers",
)


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


@dataclass(frozen=True)
class BestTrial:
    """The best trial of a sweep and its best checkpoint."""

    trial_id: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint_path: str | None


def evaluations(job: FinetuneConfig, train_rows: int) -> int:
    """How many reports a job makes (its scheduler time budget)."""
    t = job.training
    per_step = t.batch_size * job.scaling.num_workers
    steps_per_epoch = math.ceil(math.ceil(train_rows / per_step) / t.grad_accum_steps)
    total = t.max_steps or steps_per_epoch * t.epochs
    every = steps_per_epoch if t.eval_every == "epoch" else t.eval_every
    return math.ceil(total / every)


@dataclass(frozen=True)
class ResolvedJob:
    """A trial's params -> its whole job, flat and dotted (what W&B records as its config)."""

    base_job: dict[str, Any]

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self.base_job
        for key, value in params.items():
            job = set_dotted(job, key, value)
        return _flatten(job)


@dataclass(frozen=True)
class PlannedEvaluations:
    """A trial's config -> the reports its job makes unless something stops it early."""

    base_job: dict[str, Any]
    train_rows: int

    def __call__(self, params: dict[str, Any]) -> int:
        job = self.base_job
        for key, value in params.items():
            job = set_dotted(job, key, value)
        return evaluations(parse_config({**job, "name": "x"}), self.train_rows)


def max_evaluations(spec: SweepSpec, train_rows: int) -> int:
    """The most reports any trial of the space can make."""
    base = spec.base_job.model_dump(mode="json")
    jobs = [base]
    for key in _LENGTH_KEYS:
        if key in spec.search.space:
            jobs += [
                set_dotted(j, key, v) for j in jobs for v in spec.search.space[key].bounds_samples()
            ]
    return max(evaluations(parse_config({**j, "name": "x"}), train_rows) for j in jobs)


def concurrency(spec: SweepSpec, scaling: ScalingConfig, nodes: list[dict[str, float]]) -> int:
    """Trials that fit at once: the limiting resource over one trial's request, capped by spec."""
    per_worker = {"CPU": scaling.cpus_per_worker, "GPU": scaling.gpus_per_worker}
    need = {
        res: scaling.num_workers * amount
        for res, amount in (per_worker | scaling.resources).items()
    }
    have = {res: sum(n.get(res, 0.0) for n in nodes) for res in need}
    fits = min(int(have[res] // amount) for res, amount in need.items() if amount)
    cap = spec.search.max_concurrent_trials or fits
    return max(1, min(fits, cap))


def trial_scalings(spec: SweepSpec) -> list[tuple[str, ScalingConfig]]:
    """(where it comes from, scaling) for the base job and every extreme the space can give it."""
    base = spec.base_job.model_dump(mode="json")
    variants = [("job.scaling", base)]
    for key, param in spec.search.space.items():
        if key.startswith("scaling."):
            variants += [
                (f"search.space.{key}", set_dotted(job, key, value))
                for _, job in variants
                for value in param.bounds_samples()
            ]
    return [(where, parse_config({**job, "name": "x"}).scaling) for where, job in variants]


def preflight(spec: SweepSpec) -> tuple[JobSummary, int]:
    """Checks data, model and resources before any trial; returns the summary and concurrency.

    Needs a connected Ray runtime (for the cluster's resources).
    """
    summary = check_inputs(spec.base_job)
    nodes = cluster_nodes()
    scalings = trial_scalings(spec)
    for where, scaling in scalings:
        check_resources(scaling, nodes, field=where)
    for res, amount in spec.driver_resources.items():
        if not any(node.get(res, 0.0) + 1e-9 >= amount for node in nodes):
            raise SpecError(
                f"driver_resources.{res}: infeasible resources: no node of the cluster has "
                f"{amount:g} {res} (nodes define: {sorted({r for n in nodes for r in n})})"
            )
    return summary, min(concurrency(spec, scaling, nodes) for _, scaling in scalings)


def _spec_text(spec: SweepSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=True)


def _check_same_spec(folder: Location, spec: SweepSpec) -> bool:
    """True when `folder` holds this sweep already; raises if it holds a different spec.

    Where the sweep logs and promotes (`wandb`, `promote`) may change between runs; what it
    runs may not.
    """
    saved = folder.join(SPEC_FILE)
    if not storage.exists(saved):
        return False
    # Both sides through the model, defaults left out: a field added to the spec since the
    # sweep started (at its default) is not a difference.
    ignored = {"wandb", "promote"}
    before_spec = SweepSpec.model_validate(yaml.safe_load(storage.read_text(saved))).model_dump(
        mode="json", exclude_defaults=True, exclude=ignored
    )
    now_spec = spec.model_dump(mode="json", exclude_defaults=True, exclude=ignored)
    before, now = (yaml.safe_dump(x, sort_keys=True) for x in (before_spec, now_spec))
    if before != now:
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(True), now.splitlines(True), "existing sweep", "this spec"
            )
        )
        raise SpecError(
            f"a different sweep named {spec.name!r} exists at {folder}; use another name or "
            f"--restart to discard it. Difference:\n{diff}"
        )
    return True


def build_tuner(
    spec: SweepSpec,
    trainable: Any,
    *,
    max_t: int,
    max_concurrent: int,
    storage: str,
    callbacks: Sequence[Callback] = (),
    quiet: bool = False,
    reuse_actors: bool = False,
) -> ray.tune.Tuner:
    """A fresh `Tuner` for `spec` around any Tune trainable (the seam the contract test uses).

    Args:
        spec: The sweep: search method, space, scheduler, budget.
        trainable: A Tune trainable; `run_sweep` passes the per-trial driver.
        max_t: The most evaluations one trial reports (the scheduler's horizon).
        max_concurrent: Trials at once.
        storage: Absolute path or URI the experiment lives under (as `spec.name`).
        callbacks: Tune callbacks (progress, logging, benchmarks' clocks).
        quiet: Silence Tune's own trial table (when a `SweepProgress` reports instead).
        reuse_actors: Reuse trial actors between trials. Only for trainables without Train
            inside: with a `TorchTrainer` per trial it hung a tpe+asha sweep here (Tune lost
            track of a reset actor's trial while its Train run waited to report).
    """
    _keep_credentials_out_of_ray_logs()
    metric, mode = spec.search.metric, spec.search.mode
    searcher = OptunaSearch(
        space=define_by_run(spec.search.space, _flatten(spec.base_job.model_dump(mode="json"))),
        metric=metric,
        mode=mode,
        sampler=make_sampler(spec.search.method, spec.search.space, spec.search.seed),
    )
    return ray.tune.Tuner(
        trainable,
        tune_config=ray.tune.TuneConfig(
            search_alg=searcher,
            scheduler=make_scheduler(spec.scheduler, metric, mode, max_t),
            num_samples=spec.trials,
            max_concurrent_trials=max_concurrent,
            time_budget_s=spec.search.time_budget_s,
            reuse_actors=reuse_actors,
        ),
        run_config=ray.tune.RunConfig(
            name=spec.name,
            storage_path=storage,
            stop=_stoppers(spec),
            # Failed trials are retried by Tune (resuming their Train run from its latest
            # checkpoint), not inside the trial: see `make_trial_driver`.
            failure_config=ray.tune.FailureConfig(max_failures=2),
            callbacks=list(callbacks),
            verbose=0 if quiet else None,
        ),
    )


def _keep_credentials_out_of_ray_logs() -> None:
    # Tune copies the driver's AWS credentials into each trial actor's runtime env, and Ray's
    # runtime-env agent logs runtime envs in plain text. Trial processes inherit the node's
    # environment anyway (the raylet's on a local cluster, the nodes' own on a real one), so the
    # copy only leaks.
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(
        {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"}
    )


def _stoppers(spec: SweepSpec) -> Stopper:
    stoppers: list[Stopper] = [NonFiniteStopper(spec.search.metric)]
    if spec.search.gpu_hours_budget:
        scaling = spec.base_job.scaling.model_dump()
        stoppers.append(GpuHoursBudget(spec.search.gpu_hours_budget, scaling))
    return CombinedStopper(*stoppers)


def run_sweep(
    spec: SweepSpec,
    restart: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> BestTrial | None:
    """Runs (or resumes) a sweep and returns its best trial.

    A sweep whose name exists under the storage path resumes: finished trials are not rerun.
    `restart` discards the existing sweep first. `progress` prints a `SweepProgress` line per
    change instead of Tune's trial table.
    """
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    summary, max_concurrent = preflight(spec)
    folder = sweep_folder(spec)
    try:
        if restart:
            storage.delete(folder)
        resuming = _check_same_spec(folder, spec)
    except OSError as exc:
        raise SpecError(f"storage_path: cannot use {folder}: {exc}") from None
    planned = PlannedEvaluations(
        spec.base_job.model_dump(mode="json"), summary.split_sizes["train"]
    )
    results_log = ResultsLog(results_uri(spec), planned)
    callbacks = [results_log, *callbacks]
    streamer = wandb_streamer(spec, planned, folder)
    if streamer is not None:
        callbacks.append(streamer)
    if spec.promote and spec.promote.when == "improvement":
        callbacks.append(PromoteOnImprovement(spec, results_log))
    if progress:
        callbacks.append(
            SweepProgress(spec.name, spec.search.metric, spec.search.mode, spec.trials, planned)
        )
    driver = ray.tune.with_resources(
        make_trial_driver(spec.base_job.model_dump(mode="json"), folder.join("train").uri),
        # Tune refuses an empty request; a token of memory keeps the driver off the CPUs,
        # which the trial's Train workers hold. `driver_resources` pins it (e.g. to on-demand
        # nodes, so a spot reclaim never kills a trial's driver).
        {"CPU": 0, "memory": 1 << 20, **spec.driver_resources},
    )
    if resuming and ray.tune.Tuner.can_restore(folder.uri):
        tuner = ray.tune.Tuner.restore(folder.uri, driver, resume_errored=True)
        # The saved experiment state holds the first run's callbacks; this run's replace them.
        run_config = tuner._local_tuner.get_run_config()
        run_config.callbacks = list(callbacks)
        if progress:
            run_config.verbose = 0
    else:
        storage.write_text(folder.join(SPEC_FILE), _spec_text(spec))
        max_t = max_evaluations(spec, summary.split_sizes["train"])
        tuner = build_tuner(
            spec,
            driver,
            max_t=max_t,
            max_concurrent=max_concurrent,
            storage=Location.of(spec.storage_path).uri,
            callbacks=callbacks,
            quiet=progress,
        )
    tuner.fit()
    if spec.promote:
        _report_promotion(promote(spec), spec)
    if streamer is not None and streamer.mode == "offline":
        runs = f"{streamer.directory}/wandb/offline-run-*"
        print(f"W&B runs are offline; upload them with: wandb sync {runs}")
    return best_trial(spec)


class PromoteOnImprovement(Callback):
    """Promotes whenever a trial reports a checkpoint better than the last one promoted."""

    def __init__(self, spec: SweepSpec, results: ResultsLog) -> None:
        assert spec.promote is not None
        self.spec, self.results = spec, results
        self.metric = spec.promote.metric or spec.search.metric
        self.sign = 1 if (spec.promote.mode or spec.search.mode) == "max" else -1
        self.best: float | None = None

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        value = result.get(self.metric)
        if not result.get("checkpoint_path") or not isinstance(value, (int, float)):
            return
        if not math.isfinite(value) or (
            self.best is not None and self.sign * value <= self.sign * self.best
        ):
            return
        self.best = float(value)
        self.results.flush()  # promotion reads the results file: this report must be in it
        try:
            _report_promotion(promote(self.spec), self.spec)
        except PromotionError as exc:  # the sweep goes on; the end of the sweep tries again
            print(f"warning: promotion failed: {exc}")


def _report_promotion(done: Promotion | None, spec: SweepSpec) -> None:
    if done is None:
        print(f"nothing to promote: no checkpoint with a finite {spec.search.metric}")
    elif done.created:
        print(f"promoted trial {done.manifest['trial_id']} to {done.location}")
    else:
        print(f"already promoted: {done.location} holds this checkpoint")


def wandb_streamer(
    spec: SweepSpec, planned: Callable[[dict[str, Any]], int] | None, folder: Location
) -> WandbStreamer | None:
    """The sweep's W&B callback, or None when W&B is disabled."""
    w = spec.wandb
    mode, note = resolve_mode(w.mode)
    if mode == "disabled":
        return None
    # W&B writes run files locally: beside the sweep on local storage, else ./wandb.
    directory = w.dir or (folder.path if folder.is_local else ".")
    if note:
        print(f"{note}; run files go to {directory}/wandb")
    return WandbStreamer(
        sweep=spec.name,
        mode=mode,
        directory=directory,
        project=w.project,
        entity=w.entity,
        group=w.group or spec.name,
        tags=w.tags,
        job_config=ResolvedJob(spec.base_job.model_dump(mode="json")),
        planned=planned,
        metric=spec.search.metric,
        metric_mode=spec.search.mode,
        sweep_config={
            "sweep": spec.name,
            "search": spec.search.model_dump(mode="json", exclude_none=True),
            "scheduler": spec.scheduler.model_dump(mode="json", exclude_none=True),
        },
        init_timeout_s=w.init_timeout_s,
        finish_timeout_s=w.finish_timeout_s,
    )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def results_uri(spec: SweepSpec) -> str:
    """Where the sweep's results file lives."""
    return sweep_folder(spec).join(RESULTS_FILE).uri


def sweep_folder(spec: SweepSpec) -> Location:
    """Where the sweep lives: `<storage_path>/<name>`."""
    return Location.of(spec.storage_path).join(spec.name)


def trial_table(spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per trial: id, status, stopped early, parameters, reports, best target metric."""
    return [
        {
            "trial_id": t.trial_id,
            "status": t.status,
            "stopped_early": t.stopped_early,
            "params": t.params,
            "reports": t.reports,
            "best": t.best,
        }
        for t in summarize(read_results(results_uri(spec)), spec.search.metric, spec.search.mode)
    ]


def best_trial(spec: SweepSpec) -> BestTrial | None:
    """The trial with the best finite target metric at any report, and that report's checkpoint.

    Ties go to the earlier trial id, then the earlier report: the choice is deterministic.
    """
    best = best_candidate(spec, spec.search.metric, spec.search.mode)
    if best is None:
        return None
    return BestTrial(best.trial_id, best.params, best.metrics, str(best.checkpoint))


__all__ = ["BestTrial", "best_trial", "build_tuner", "job_for_trial", "run_sweep", "trial_table"]
