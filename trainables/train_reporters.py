"""The loop's reporters that write a Train run's folder (`<storage>/<run>/checkpoint_*` and
Train's snapshot): as a rank of a `TorchTrainer`, or as the one rank of a job run in its Tune
trial's own process. See `trainables.reporter` for the interface.

Either way a checkpoint reaches the run's storage by `persist_checkpoint`: moved by renames when
the storage is a local folder on the same device (Train copies), and removed again, not left
half written, when the storage has no room for it (the run fails saying so; the checkpoints
before it stay as they were).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pa_fs
import ray.train

from trainables.checkpointing import NO_SPACE, NO_SPACE_ERRNOS
from trainables.ray_compat import RunCheckpoints, RunStorage
from trainables.reporter import KeptCheckpoint, OneRank

if TYPE_CHECKING:
    import torch


class TrainReporter:
    """A rank of a `TorchTrainer` worker group, through Ray Train's public API.

    Made inside the worker (it reads the worker's Train context). Ray refuses this API inside a
    Tune session, where one-worker trials use `InProcessReporter` instead.
    """

    distributed = True

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()

    @property
    def device(self) -> torch.device:
        import ray.train.torch  # torch: on the workers only

        return ray.train.torch.get_device()

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_fn=_to_run_storage)

    def restore(self) -> ray.train.Checkpoint | None:
        return ray.train.get_checkpoint()

    def kept(self) -> list[KeptCheckpoint]:
        reported = ray.train.get_all_reported_checkpoints(
            consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
        )
        return [KeptCheckpoint(r.checkpoint, r.metrics) for r in reported]


def _to_run_storage(checkpoint: ray.train.Checkpoint, name: str) -> ray.train.Checkpoint:
    """`ray.train.report`'s upload function: this worker's part into its run's storage."""
    return persist_checkpoint(checkpoint, name, RunStorage.of_train_worker())


#: Called with each report's metrics and its checkpoint in storage (None without one).
OnReport = Callable[[dict[str, Any], ray.train.Checkpoint | None], None]


class InProcessReporter(OneRank):
    """The one rank of a one-worker job run in the calling process (no Train controller or
    worker): its folder is laid out and kept by Train's own parts as a `TorchTrainer` run's is
    (`trainables.ray_compat`), so a rerun of the run resumes from its latest checkpoint, and
    everything that reads a run's folder (results, promotion, the chaos tests) reads it
    unchanged. Each report goes to `on_report` once its checkpoint is stored and registered.
    """

    def __init__(
        self, storage: RunStorage, checkpoints: RunCheckpoints, on_report: OnReport
    ) -> None:
        self.storage, self.checkpoints, self.on_report = storage, checkpoints, on_report

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        stored = None
        if checkpoint_dir is not None:
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
            stored = persist_checkpoint(checkpoint, RunStorage.new_checkpoint_name(), self.storage)
            self.checkpoints.register(stored, metrics)
        self.on_report(metrics, stored)

    def restore(self) -> ray.train.Checkpoint | None:
        return self.checkpoints.latest()

    def kept(self) -> list[KeptCheckpoint]:
        return [KeptCheckpoint(c, m) for c, m in self.checkpoints.kept()]


def persist_checkpoint(
    checkpoint: ray.train.Checkpoint, name: str, storage: RunStorage
) -> ray.train.Checkpoint:
    """Copies a reported checkpoint into the run's folder `name` as `ray.train.report` does by
    default, except on a full storage: the part copied is deleted (a later run would otherwise
    find a folder that holds some files and not others) and the error names the folder.

    Raises:
        OSError: ENOSPC with a message naming the checkpoint folder; other errors as they come.
    """
    try:
        moved = move_local_checkpoint(checkpoint, storage, name)
        return moved or storage.copy_checkpoint(checkpoint, name)
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS and NO_SPACE not in str(exc):
            raise
        destination = storage.checkpoint_path(name)
        # Another rank may have removed it first, or the storage gone away.
        with contextlib.suppress(OSError):
            storage.filesystem.delete_dir(destination)
        raise OSError(
            errno.ENOSPC,
            f"{NO_SPACE}: checkpoint {destination} could not be written (storage full); "
            "removed what was copied of it, the checkpoints before it are intact",
        ) from None


def move_local_checkpoint(
    checkpoint: ray.train.Checkpoint, storage: RunStorage, name: str
) -> ray.train.Checkpoint | None:
    """Moves a checkpoint's files into the run's storage by renaming them, when both are folders
    on one local filesystem and device; None (nothing done) otherwise.

    Train's copy of a local run's checkpoint writes it all twice per report (weights and the
    optimizer's moments, ~270 MB for MiniLM), and the second write's dirty pages are flushed
    while the next steps train. A rename writes nothing. Files go one by one into the
    destination, so ranks merge their parts as a copy merges them. The source folder is left
    empty (its owner, a temporary folder, removes it).
    """
    if not (
        isinstance(checkpoint.filesystem, pa_fs.LocalFileSystem)
        and isinstance(storage.filesystem, pa_fs.LocalFileSystem)
    ):
        return None
    # What Train checks before its copy: the storage is the one this run set up (a local path
    # on another node's disk is not).
    storage.check_reachable()
    source = Path(checkpoint.path)
    destination = Path(storage.checkpoint_path(name))
    destination.mkdir(parents=True, exist_ok=True)
    if source.stat().st_dev != destination.stat().st_dev:
        return None  # a rename cannot cross devices
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        target = destination / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
    return ray.train.Checkpoint(str(destination), filesystem=storage.filesystem)
