"""The Train calls the per-worker loop makes, wherever it runs: a `TorchTrainer` worker, or the
Tune trial's own process for a one-worker trial (`trainables/in_process.py`).

Ray's public `ray.train.report` / `get_context` / `get_checkpoint` refuse to run inside a Tune
session (a DeprecationWarning meant for Tune functions that report through Train). The loop
runs in one on the in-process path, so it calls the run's Train function utilities directly:
the object those public functions delegate to, Ray's documented place to change their
behaviour. Private API (`ray.train.v2._internal.execution.train_fn_utils`, checked against
Ray 2.60.0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray.train
from ray.train.v2._internal.execution.train_fn_utils import get_train_fn_utils


def context() -> Any:
    """The run's `TrainContext`: ranks, world size, storage."""
    return get_train_fn_utils().get_context()


def report(
    metrics: dict[str, Any],
    checkpoint: ray.train.Checkpoint | None,
    upload: Callable[[ray.train.Checkpoint, str], ray.train.Checkpoint],
) -> None:
    """Reports `metrics` and the checkpoint folder, copied to storage by `upload`."""
    get_train_fn_utils().report(metrics, checkpoint=checkpoint, checkpoint_upload_fn=upload)


def latest_checkpoint() -> ray.train.Checkpoint | None:
    """The run's latest registered checkpoint (what a restarted run resumes from)."""
    return get_train_fn_utils().get_checkpoint()


def kept_checkpoints() -> list[Any]:
    """Every checkpoint the run keeps, as `ReportedCheckpoint`s (checkpoint and metrics)."""
    return get_train_fn_utils().get_all_reported_checkpoints(
        consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
    )


def is_distributed() -> bool:
    """Whether the run is a `TorchTrainer` worker group (DDP set up), not one in-process rank."""
    return get_train_fn_utils().is_distributed()
