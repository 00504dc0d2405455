"""A one-worker job run in the calling process: no Train controller, no worker actors.

A `TorchTrainer` starts a controller and a worker process per `fit()`, each importing torch and
the model libraries, and sets up a placement group and a process group: ~10 s per trial on a
2-core laptop, most of a small trial. A one-worker job needs none of that, so a sweep's trial
runs the loop itself, in its Tune trial's process.

What a run keeps is what a `TorchTrainer` run keeps, through Train's own parts: its
`StorageContext` lays out and copies checkpoints (`<storage>/<run>/checkpoint_*`), its
`CheckpointManager` keeps `checkpoints_to_keep` of them by the monitored metric and writes the
run's snapshot. So a rerun with the same name resumes from the run's latest checkpoint, and
everything that reads a run's folder (results, promotion, the chaos tests) reads it unchanged.
Private API (`ray.train.v2._internal.execution`, checked against Ray 2.60.0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow.fs as pa_fs
import ray.train
from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import CheckpointManager
from ray.train.v2._internal.execution.storage import StorageContext
from ray.train.v2._internal.execution.train_fn_utils import (
    TrainFnUtils,
    set_train_fn_utils,
)
from ray.train.v2._internal.execution.training_report import _TrainingReport
from ray.train.v2.api.context import LocalTrainContext
from ray.train.v2.api.reported_checkpoint import ReportedCheckpoint, ReportedCheckpointStatus

from trainables.config import FinetuneConfig
from trainables.trainer import checkpoint_config, resolve_storage

#: Called with each report's metrics and its checkpoint in storage (None without one).
OnReport = Callable[[dict[str, Any], ray.train.Checkpoint | None], None]


def runs_in_process(job: FinetuneConfig) -> bool:
    """Whether a sweep runs `job` in its trial's process: one worker (more need DDP's group)."""
    return job.scaling.num_workers == 1


def run_in_process(
    job: FinetuneConfig,
    *,
    run_name: str,
    storage_path: str,
    on_report: OnReport,
    storage_filesystem: pa_fs.FileSystem | None = None,
) -> None:
    """Runs `job`'s loop as the one rank of the run `storage_path/run_name`, here.

    Args:
        job: A one-worker job.
        run_name: The run's folder name; a run that has checkpoints there resumes.
        storage_path: Absolute path or URI the run's folder lives under.
        on_report: Gets every report after its checkpoint is stored and registered.
        storage_filesystem: A pyarrow filesystem for `storage_path` (S3 with an endpoint).
    """
    from trainables.loop import train_fn_per_worker  # torch and the model libraries

    storage = StorageContext(resolve_storage(storage_path), run_name, storage_filesystem)
    registry = _Registry(checkpoint_config(job), storage)
    set_train_fn_utils(_InProcessRun(storage, registry, on_report))
    try:
        train_fn_per_worker(job.model_dump(mode="json"))
    finally:
        set_train_fn_utils(None)


class _Registry(CheckpointManager):
    """Train's checkpoint manager, without the controller's event loop: a report registers its
    checkpoint (keep the best N, write the snapshot, delete the rest) before the loop goes on."""

    def _notify(self) -> None:
        # Wakes coroutines waiting on new checkpoints in the controller; none wait here.
        pass


class _Context(LocalTrainContext):
    """Rank 0 of 1, with the run's storage (Ray's local context has none)."""

    def __init__(self, storage: StorageContext) -> None:
        super().__init__(experiment_name=storage.experiment_dir_name)
        self._storage = storage

    def get_storage(self) -> StorageContext:
        return self._storage


class _InProcessRun(TrainFnUtils):
    """What `trainables/session.py` calls reach on the in-process path."""

    def __init__(self, storage: StorageContext, registry: _Registry, on_report: OnReport) -> None:
        self._context = _Context(storage)
        self._registry = registry
        self._on_report = on_report

    def report(  # Ray's signature, with the arguments the loop passes
        self,
        metrics: dict[str, Any],
        checkpoint: ray.train.Checkpoint | None = None,
        checkpoint_dir_name: str | None = None,
        checkpoint_upload_fn: Callable[[ray.train.Checkpoint, str], ray.train.Checkpoint]
        | None = None,
        **_: Any,
    ) -> None:
        stored = None
        if checkpoint is not None:
            storage = self._context.get_storage()
            name = checkpoint_dir_name or StorageContext.make_default_checkpoint_dir_name()
            upload = checkpoint_upload_fn or storage.persist_current_checkpoint
            stored = upload(checkpoint, name)
            self._registry.register_checkpoint(_TrainingReport(stored, metrics, False))
        self._on_report(metrics, stored)

    def get_checkpoint(self) -> ray.train.Checkpoint | None:
        latest = self._registry.latest_checkpoint_result
        return latest.checkpoint if latest else None

    def get_all_reported_checkpoints(self, *_: Any, **__: Any) -> list[ReportedCheckpoint]:
        return [
            ReportedCheckpoint(r.checkpoint, r.metrics, ReportedCheckpointStatus.COMMITTED)
            for r in self._registry.best_checkpoint_results
        ]

    def get_dataset_shard(self, dataset_info: Any) -> Any:
        raise NotImplementedError("the loop reads its own data")

    def get_context(self) -> _Context:
        return self._context

    def get_preemption_info(self) -> None:
        return None

    def is_distributed(self) -> bool:
        return False

    def barrier(self) -> None:
        pass

    def broadcast_from_rank_zero(self, data: Any) -> Any:
        return data
