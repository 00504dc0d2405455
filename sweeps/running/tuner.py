"""Builds the Ray Tune `Tuner` of a sweep: the search method, scheduler, stoppers and budget of
its spec around any trainable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray.tune
from ray.tune import Callback
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm
from ray.tune.search.optuna import OptunaSearch

from sweeps.running.schedulers import SchedulerContext, make_scheduler
from sweeps.running.search import define_by_run, draw_population, make_sampler
from sweeps.running.stoppers import make_stopper
from sweeps.spec import SweepSpec, flatten
from sweeps.store.storage import Location, tune_storage
from trainables.ray_compat import stop_propagating_env


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
    points: list[dict[str, Any]] | None = None,
) -> ray.tune.Tuner:
    """A fresh `Tuner` for `spec` around any Tune trainable (the seam the contract test uses).

    Args:
        spec: The sweep: search method, space, scheduler, budget.
        trainable: A Tune trainable; `run_sweep` passes the per-trial driver.
        max_t: The most evaluations one trial reports (the scheduler's horizon).
        max_concurrent: Trials at once.
        storage: Absolute path or URI the experiment lives under (as `spec.name`).
        callbacks: Tune callbacks (results file, progress, W&B, benchmarks' clocks).
        quiet: Silence Tune's own trial table (when a `SweepProgress` reports instead).
        reuse_actors: Reuse trial actors between trials. Only for trainables without Train
            inside: with a `TorchTrainer` per trial it hung a tpe+asha sweep here (Tune lost
            track of a reset actor's trial while its Train run waited to report).
        points: Run exactly these trial configs instead of searching (the confirmation
            stage); the spec's `num_samples` should be their number.
    """
    keep_credentials_out_of_ray_logs()
    search = spec.search
    fixed = flatten(spec.job.model_dump(mode="json"))
    context = SchedulerContext(spec.objective, max_t, search.space, fixed, search.seed)
    generator_cap = max_concurrent
    if points is None and spec.scheduler.evolves:
        points = population(spec, fixed)
        # The whole population must exist for PBT to compare it: Tune time-slices what does not
        # fit at once (pausing a trial to its checkpoint) instead of holding trials back.
        generator_cap = 0
    storage_path, storage_filesystem = tune_storage(Location.of(storage))
    return ray.tune.Tuner(
        trainable,
        tune_config=ray.tune.TuneConfig(
            search_alg=search_algorithm(spec, fixed, points, generator_cap),
            scheduler=make_scheduler(spec.scheduler, context),
            num_samples=spec.trials,
            # A fixed list of points caps its own concurrency (Tune ignores this setting then).
            max_concurrent_trials=None if points else max_concurrent,
            time_budget_s=search.time_budget_s,
            reuse_actors=reuse_actors,
        ),
        # Tune presets only keys its param space has.
        param_space=dict.fromkeys(points[0]) if points else None,
        run_config=ray.tune.RunConfig(
            name=spec.name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            stop=make_stopper(search, spec.job.scaling),
            # Failed trials are retried by Tune (resuming their Train run from its latest
            # checkpoint), not inside the trial: see `make_trial_driver`.
            failure_config=ray.tune.FailureConfig(max_failures=2),
            # PBT exploits the checkpoints trials hand to Tune, and keeps all of them: a donor
            # runs on while the trial copying it restarts, and with the 3 latest kept a donor
            # 9 reports ahead had deleted the checkpoint before the copy restored from it (the
            # trial failed 3 times and ended). Disk: one model copy per report per trial.
            # Without PBT, trials hand Tune no checkpoint and this keeps nothing.
            checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=None),
            callbacks=list(callbacks),
            verbose=0 if quiet else None,
        ),
    )


def search_algorithm(
    spec: SweepSpec,
    fixed: dict[str, Any],
    points: list[dict[str, Any]] | None = None,
    max_concurrent: int = 0,
) -> SearchAlgorithm:
    """Optuna's sampler of the spec's method through `OptunaSearch`; given `points` (PBT's
    population, which Tune allows no searcher beside, or the confirmation stage's runs),
    exactly those configs in order."""
    search = spec.search
    if points is not None:
        return BasicVariantGenerator(
            points_to_evaluate=points, max_concurrent=max_concurrent, random_state=search.seed
        )
    return OptunaSearch(
        space=define_by_run(search.space, fixed),
        metric=search.metric,
        mode=search.mode,
        sampler=make_sampler(search.method, search.space, search.seed),
    )


def population(spec: SweepSpec, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """PBT's starting population, drawn up front by the spec's method (random or grid)."""
    search = spec.search
    drawn = draw_population(search.method, search.space, fixed, search.seed, spec.trials)
    # Every trial carries every key of the space: a conditional parameter that does not
    # apply keeps the job's own value.
    return [{k: point.get(k, fixed.get(k)) for k in search.space} for point in drawn]


def keep_credentials_out_of_ray_logs() -> None:
    """Stops Tune from copying the driver's AWS credentials into trial runtime envs.

    Tune copies them into each trial actor's runtime env, and Ray's runtime-env agent logs
    runtime envs in plain text. Trial processes inherit the node's environment anyway (the
    raylet's on a local cluster, the nodes' own on a real one), so the copy only leaks.
    """
    stop_propagating_env(
        {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"}
    )
