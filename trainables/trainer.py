"""Builds the Ray Train `TorchTrainer` that runs `train_fn_per_worker` for one job, and that
per-worker entry point: the loop (`trainables.loop.run_loop`) with a reporter over Ray Train's
public API.

Both the stand-alone runner (`python -m trainables.finetune`) and the sweep's per-trial driver
build their trainers here, so a job behaves the same alone and inside a sweep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.fs as pa_fs
from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train import ScalingConfig as RayScalingConfig
from ray.train.torch import TorchTrainer

from trainables.config import FinetuneConfig, ScalingConfig
from trainables.inputs import NO_INPUTS, TrialInputs
from trainables.objective import Objective
from trainables.ray_compat import trainer_without_unused_datasets

# Ray Train polls its workers this often; a report waits for the previous one to be consumed,
# so Ray's 2 s default stalls training at every evaluation and adds ~1 s to the end of a run.
HEALTH_CHECK_INTERVAL_S = "0.2"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """The per-worker entry point handed to Ray Train: the loop as this rank of the worker
    group, reporting through Ray Train (`TrainReporter`).

    Ray pickles it by reference into the Train controller as well as the workers; importing
    the loop (torch, transformers) only here keeps those imports out of the controller, which
    otherwise starts seconds later in every trial.

    Args:
        config: What `loop_config` made of the job and its inputs (Ray's `train_loop_config`).
    """
    from trainables.loop import run_loop
    from trainables.train_reporters import TrainReporter

    job, inputs = read_loop_config(config)
    run_loop(job, TrainReporter(), inputs)


def loop_config(cfg: FinetuneConfig, inputs: TrialInputs = NO_INPUTS) -> dict[str, Any]:
    """A job and its inputs as the plain mapping Ray hands every worker (`train_loop_config`)."""
    return {"job": cfg.model_dump(mode="json"), "inputs": inputs.to_dict()}


def read_loop_config(config: dict[str, Any]) -> tuple[FinetuneConfig, TrialInputs]:
    """The job and its inputs back from `loop_config`'s mapping."""
    return FinetuneConfig.model_validate(config["job"]), TrialInputs.from_dict(config["inputs"])


def _controller_env() -> None:
    """Ray Train settings read from the calling process's environment; the user's win."""
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    # On one node there is nothing the preemption watcher could act on, and it is one more
    # actor process (torch imported) starting beside the workers of every run.
    if ray.is_initialized() and len([n for n in ray.nodes() if n["Alive"]]) == 1:
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


def resolve_storage(storage_path: str) -> str:
    """An absolute path or a URI, which is what Ray's storage needs."""
    if "://" in storage_path:
        return storage_path
    return str(Path(storage_path).expanduser().resolve())


def build_trainer(
    cfg: FinetuneConfig,
    inputs: TrialInputs = NO_INPUTS,
    *,
    run_name: str,
    storage_path: str,
    storage_filesystem: pa_fs.FileSystem | None = None,
    callbacks: Sequence[Any] = (),
    max_failures: int = 0,
    train_fn: Callable[[dict[str, Any]], None] = train_fn_per_worker,
) -> TorchTrainer:
    """A `TorchTrainer` for `cfg` writing under `storage_path/run_name`.

    Args:
        cfg: The job.
        inputs: What its run is handed beside the job (a checkpoint to start from, prepared
            tokens).
        run_name: Deterministic run name (a sweep passes its trial id): a rerun with the same
            name and storage resumes from the run's latest checkpoint.
        storage_path: Absolute path or URI for checkpoints and run state.
        storage_filesystem: A pyarrow filesystem for `storage_path` (e.g. S3 with an endpoint).
        callbacks: Ray Train user callbacks (a sweep passes `TuneReportCallback`).
        max_failures: Worker-group restarts, each resuming from the latest checkpoint.
        train_fn: The per-worker entry (it gets `loop_config(cfg, inputs)`); a seam for
            fault-injection tests.
    """
    _controller_env()
    s = cfg.scaling
    trainer: TorchTrainer = trainer_without_unused_datasets()(
        train_fn,
        train_loop_config=loop_config(cfg, inputs),
        scaling_config=RayScalingConfig(
            num_workers=s.num_workers,
            use_gpu=s.gpus_per_worker > 0,
            resources_per_worker=worker_resources(s),
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            callbacks=list(callbacks),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=checkpoint_config(cfg),
        ),
    )
    return trainer


def worker_resources(s: ScalingConfig) -> dict[str, float]:
    """What one worker holds: its CPUs, GPUs and custom resources."""
    return (
        {"CPU": s.cpus_per_worker}
        | ({"GPU": s.gpus_per_worker} if s.gpus_per_worker else {})
        | s.resources
    )


def checkpoint_config(cfg: FinetuneConfig) -> CheckpointConfig:
    """Which checkpoints a run keeps: `training.checkpoints_to_keep`, best by the monitored
    metric (the latest is always kept too)."""
    t = cfg.training
    return CheckpointConfig(
        num_to_keep=t.checkpoints_to_keep,
        checkpoint_score_attribute=t.monitor,
        checkpoint_score_order=Objective.of(t.monitor).mode,
    )
