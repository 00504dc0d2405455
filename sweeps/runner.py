"""Runs a sweep on Ray Tune: preflight, resources, search + scheduler, resume, best trial."""

from __future__ import annotations

import difflib
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.tune
import yaml
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from sweeps.errors import SpecError
from sweeps.schedulers import make_scheduler
from sweeps.search import define_by_run, make_sampler
from sweeps.spec import SweepSpec, set_dotted
from sweeps.trial import job_for_trial, make_trial_driver
from trainables.config import FinetuneConfig, parse_config
from trainables.preflight import JobSummary, check_inputs, check_resources, cluster_nodes
from trainables.trainer import resolve_storage

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


def concurrency(spec: SweepSpec, nodes: list[dict[str, float]]) -> int:
    """Trials that fit at once: the limiting resource over one trial's request, capped by spec."""
    s = spec.base_job.scaling
    need = {"CPU": s.num_workers * s.cpus_per_worker, "GPU": s.num_workers * s.gpus_per_worker}
    have = {res: sum(n.get(res, 0.0) for n in nodes) for res in need}
    fits = min(int(have[res] // amount) for res, amount in need.items() if amount)
    cap = spec.search.max_concurrent_trials or fits
    return max(1, min(fits, cap))


def preflight(spec: SweepSpec) -> tuple[JobSummary, int]:
    """Checks data, model and resources before any trial; returns the summary and concurrency.

    Needs a connected Ray runtime (for the cluster's resources).
    """
    summary = check_inputs(spec.base_job)
    nodes = cluster_nodes()
    check_resources(spec.base_job.scaling, nodes, field="job.scaling")
    return summary, concurrency(spec, nodes)


def _spec_text(spec: SweepSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=True)


def _check_same_spec(folder: Path, spec: SweepSpec) -> bool:
    """True when `folder` holds this sweep already; raises if it holds a different spec."""
    saved = folder / SPEC_FILE
    if not saved.exists():
        return False
    before, now = saved.read_text(), _spec_text(spec)
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
    spec: SweepSpec, trainable: Any, *, max_t: int, max_concurrent: int, storage: str
) -> ray.tune.Tuner:
    """A fresh `Tuner` for `spec` around any Tune trainable (the seam the contract test uses).

    Args:
        spec: The sweep: search method, space, scheduler, budget.
        trainable: A Tune trainable; `run_sweep` passes the per-trial driver.
        max_t: The most evaluations one trial reports (the scheduler's horizon).
        max_concurrent: Trials at once.
        storage: Absolute path or URI the experiment lives under (as `spec.name`).
    """
    metric, mode = spec.search.metric, spec.search.mode
    searcher = OptunaSearch(
        space=define_by_run(spec.search.space, _flatten(spec.base_job.model_dump(mode="json"))),
        metric=metric,
        mode=mode,
        sampler=make_sampler(spec.search.method, spec.search.space, spec.search.seed),
    )
    num_samples = spec.grid_points if spec.search.method == "grid" else spec.search.num_samples
    return ray.tune.Tuner(
        trainable,
        tune_config=ray.tune.TuneConfig(
            search_alg=searcher,
            scheduler=make_scheduler(spec.scheduler, metric, mode, max_t),
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            time_budget_s=spec.search.time_budget_s,
        ),
        run_config=ray.tune.RunConfig(
            name=spec.name,
            storage_path=storage,
            stop=NonFiniteStopper(metric),
            failure_config=ray.tune.FailureConfig(max_failures=1),
        ),
    )


def run_sweep(spec: SweepSpec, restart: bool = False) -> BestTrial | None:
    """Runs (or resumes) a sweep and returns its best trial.

    A sweep whose name exists under the storage path resumes: finished trials are not rerun.
    `restart` discards the existing sweep first.
    """
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    summary, max_concurrent = preflight(spec)
    storage = resolve_storage(spec.storage_path)
    folder = Path(storage) / spec.name
    if restart and folder.exists():
        shutil.rmtree(folder)
    resuming = _check_same_spec(folder, spec)
    driver = ray.tune.with_resources(
        make_trial_driver(spec.base_job.model_dump(mode="json"), str(folder / "train")),
        # Tune refuses an empty request; a token of memory keeps the driver off the CPUs,
        # which the trial's Train workers hold.
        {"CPU": 0, "memory": 1 << 20},
    )
    if resuming and ray.tune.Tuner.can_restore(str(folder)):
        tuner = ray.tune.Tuner.restore(str(folder), driver, resume_errored=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEC_FILE).write_text(_spec_text(spec))
        max_t = max_evaluations(spec, summary.split_sizes["train"])
        tuner = build_tuner(
            spec, driver, max_t=max_t, max_concurrent=max_concurrent, storage=storage
        )
    tuner.fit()
    return best_trial(spec)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def trial_table(spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per trial: id, status, parameters, reports, best target metric."""
    from ray.tune import ExperimentAnalysis

    folder = str(Path(resolve_storage(spec.storage_path)) / spec.name)
    analysis = ExperimentAnalysis(
        folder, default_metric=spec.search.metric, default_mode=spec.search.mode
    )
    rows = []
    for trial in analysis.trials:
        history = analysis.trial_dataframes.get(trial.trial_id)
        values = (
            []
            if history is None or spec.search.metric not in history
            else [v for v in history[spec.search.metric].tolist() if math.isfinite(v)]
        )
        pick = max if spec.search.mode == "max" else min
        rows.append(
            {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "params": dict(trial.config),
                "reports": 0 if history is None else len(history),
                "best": pick(values) if values else None,
            }
        )
    return rows


def best_trial(spec: SweepSpec) -> BestTrial | None:
    """The trial with the best finite target metric at any report, and that report's checkpoint."""
    from ray.tune import ExperimentAnalysis

    folder = str(Path(resolve_storage(spec.storage_path)) / spec.name)
    analysis = ExperimentAnalysis(folder)
    metric, sign = spec.search.metric, (1 if spec.search.mode == "max" else -1)
    best: tuple[float, str, dict[str, Any]] | None = None
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        history = analysis.trial_dataframes.get(trial.trial_id)
        if history is None or metric not in history:
            continue
        for row in history.to_dict("records"):
            value = row.get(metric)
            ckpt = row.get("checkpoint_path")
            # Checkpoint retention may have deleted this report's checkpoint: never pick it.
            if isinstance(ckpt, str) and "://" not in ckpt and not Path(ckpt).exists():
                continue
            # Ties go to the earlier trial id and the earlier report: deterministic.
            if (
                isinstance(value, float)
                and math.isfinite(value)
                and (best is None or sign * value > sign * best[0])
            ):
                best = (value, trial.trial_id, row)
    if best is None:
        return None
    _, trial_id, row = best
    params = next(dict(t.config) for t in analysis.trials if t.trial_id == trial_id)
    metrics = {k: v for k, v in row.items() if k in _reported_keys(row)}
    return BestTrial(trial_id, params, metrics, row.get("checkpoint_path"))


def _reported_keys(row: dict[str, Any]) -> list[str]:
    from trainables.loop import REPORTED_METRICS

    return [k for k in REPORTED_METRICS if k in row and row[k] == row[k]]


__all__ = ["BestTrial", "best_trial", "build_tuner", "job_for_trial", "run_sweep", "trial_table"]
