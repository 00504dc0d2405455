"""Builds the Ray Tune `Tuner` of a sweep: the search method, scheduler, stoppers and budget of
its spec around any trainable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray.tune
from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from sweeps.running.schedulers import make_scheduler
from sweeps.running.search import define_by_run, make_sampler
from sweeps.running.stoppers import make_stopper
from sweeps.spec import SweepSpec, flatten


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
        callbacks: Tune callbacks (results file, progress, W&B, benchmarks' clocks).
        quiet: Silence Tune's own trial table (when a `SweepProgress` reports instead).
        reuse_actors: Reuse trial actors between trials. Only for trainables without Train
            inside: with a `TorchTrainer` per trial it hung a tpe+asha sweep here (Tune lost
            track of a reset actor's trial while its Train run waited to report).
    """
    keep_credentials_out_of_ray_logs()
    search = spec.search
    searcher = OptunaSearch(
        space=define_by_run(search.space, flatten(spec.job.model_dump(mode="json"))),
        metric=search.metric,
        mode=search.mode,
        sampler=make_sampler(search.method, search.space, search.seed),
    )
    return ray.tune.Tuner(
        trainable,
        tune_config=ray.tune.TuneConfig(
            search_alg=searcher,
            scheduler=make_scheduler(spec.scheduler, search.metric, search.mode, max_t),
            num_samples=spec.trials,
            max_concurrent_trials=max_concurrent,
            time_budget_s=search.time_budget_s,
            reuse_actors=reuse_actors,
        ),
        run_config=ray.tune.RunConfig(
            name=spec.name,
            storage_path=storage,
            stop=make_stopper(search, spec.job.scaling),
            # Failed trials are retried by Tune (resuming their Train run from its latest
            # checkpoint), not inside the trial: see `make_trial_driver`.
            failure_config=ray.tune.FailureConfig(max_failures=2),
            callbacks=list(callbacks),
            verbose=0 if quiet else None,
        ),
    )


def keep_credentials_out_of_ray_logs() -> None:
    """Stops Tune from copying the driver's AWS credentials into trial runtime envs.

    Tune copies them into each trial actor's runtime env, and Ray's runtime-env agent logs
    runtime envs in plain text. Trial processes inherit the node's environment anyway (the
    raylet's on a local cluster, the nodes' own on a real one), so the copy only leaks.
    """
    # Private API (ray.tune.execution.class_cache, checked against Ray 2.60.0): no public
    # setting turns the propagation off.
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(
        {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"}
    )
