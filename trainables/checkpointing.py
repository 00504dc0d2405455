"""What a checkpoint holds and how a restarted worker group takes it back.

Layout of one checkpoint folder (Ray merges what each rank writes into it):
    model files (weights, config, tokenizer or        the task's save format (rank 0)
      preprocessing config)
    training_state.pt                                 optimizer, loop position, tracker (rank 0)
    rng_rank{R}.pt                                    RNG streams of rank R (every rank)
    contents_rank{R}.json                             size and SHA-256 of each file rank R
                                                      wrote (every rank, written last)

A resumed run checks the contents lists before it loads anything: a checkpoint whose files
were cut short or changed since (a full disk, a copy cut off) is named in a warning and the run
resumes from the latest intact checkpoint Train still keeps, or fails saying so; it never starts
again from scratch.

A checkpoint the storage has no room for (a full disk) is removed, not left half written, and
the run fails saying so (`persist_checkpoint`): the checkpoints before it stay as they were.
Storage on the worker's own filesystem and device takes a checkpoint's files by a rename each,
not a copy (`move_local_checkpoint`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import posixpath
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.fs as pa_fs
import ray.train
import torch

from trainables import session
from trainables.errors import FinetuneError

if TYPE_CHECKING:
    from ray.train.v2._internal.execution.storage import StorageContext

TRAINING_STATE = "training_state.pt"
_CONTENTS = "contents_rank{rank}.json"
_CONTENTS_PREFIX = "contents_rank"
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


class CheckpointError(FinetuneError):
    """A checkpoint to resume from is damaged and no intact earlier one is kept."""


@dataclass
class LoopPosition:
    """Where the loop is: optimizer steps done, epoch, micro-batches done in that epoch.

    Example:
        >>> pos = LoopPosition(step=2, epoch=0, batches_done=4)
        >>> pos.advance(batches_taken=1, batches_per_epoch=5)  # the epoch's short last group
        >>> pos
        LoopPosition(step=3, epoch=1, batches_done=0, stopped=False)
    """

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    stopped: bool = False

    def advance(self, batches_taken: int, batches_per_epoch: int, steps: int = 1) -> None:
        """Counts `steps` optimizer steps that took `batches_taken` micro-batches of an epoch of
        `batches_per_epoch`, and moves to the next epoch once that epoch's batches are done.

        The roll-over happens here, before any checkpoint is taken, so a checkpoint written
        right after an epoch's last step resumes at the start of the next epoch.

        Args:
            batches_taken: Micro-batches the step(s) consumed.
            batches_per_epoch: Micro-batches this rank runs per epoch.
            steps: Optimizer steps to count; 0 only re-fits a resumed position to an epoch that
                is shorter than the one it was saved in (a group resumed on more ranks).
        """
        self.step += steps
        self.batches_done += batches_taken
        if self.batches_done >= batches_per_epoch:
            self.epoch, self.batches_done = self.epoch + 1, 0


# What a full disk (or an exhausted quota) says; the driver looks for it in a trial's error.
NO_SPACE = os.strerror(errno.ENOSPC)
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def persist_checkpoint(checkpoint: ray.train.Checkpoint, name: str) -> ray.train.Checkpoint:
    """Copies a reported checkpoint to the run's storage as `ray.train.report` does by default,
    except on a full storage: the part copied is deleted (a later run would otherwise find a
    folder that holds some files and not others) and the error names the storage folder.

    Passed as `ray.train.report(checkpoint_upload_fn=...)`. Uses Train's storage context, a
    DeveloperAPI (checked against Ray 2.60.0), so the folder and filesystem are Train's own.

    Raises:
        OSError: ENOSPC with a message naming the checkpoint folder; other errors as they come.
    """
    context = session.context().get_storage()
    try:
        moved = move_local_checkpoint(checkpoint, context, name)
        return moved or context.persist_current_checkpoint(checkpoint, name)
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS and NO_SPACE not in str(exc):
            raise
        destination = context.build_checkpoint_path_from_name(name)
        # Another rank may have removed it first, or the storage gone away.
        with contextlib.suppress(OSError):
            context.storage_filesystem.delete_dir(destination)
        raise OSError(
            errno.ENOSPC,
            f"{NO_SPACE}: checkpoint {destination} could not be written (storage full); "
            "removed what was copied of it, the checkpoints before it are intact",
        ) from None


def move_local_checkpoint(
    checkpoint: ray.train.Checkpoint, context: StorageContext, name: str
) -> ray.train.Checkpoint | None:
    """Moves a checkpoint's files into the run's storage by renaming them, when both are folders
    on one local filesystem and device; None (nothing done) otherwise.

    Train's `persist_current_checkpoint` copies: for a local run that is the whole checkpoint
    (weights and the optimizer's moments, ~270 MB for MiniLM) written twice per report, and the
    second write's dirty pages are flushed while the next steps train. A rename writes nothing.
    Files go one by one into the destination, so ranks merge their parts as a copy merges them.
    The source folder is left empty (its owner, a temporary folder, removes it).
    """
    if not (
        isinstance(checkpoint.filesystem, pa_fs.LocalFileSystem)
        and isinstance(context.storage_filesystem, pa_fs.LocalFileSystem)
    ):
        return None
    # What Train checks before its copy: the storage is the one this run set up (a local path
    # on another node's disk is not).
    context._check_validation_file()
    source = Path(checkpoint.path)
    destination = Path(context.build_checkpoint_path_from_name(name))
    destination.mkdir(parents=True, exist_ok=True)
    if source.stat().st_dev != destination.stat().st_dev:
        return None  # a rename cannot cross devices
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        target = destination / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
    return ray.train.Checkpoint(str(destination), filesystem=context.storage_filesystem)


def checkpoint_at(uri: str | None) -> ray.train.Checkpoint | None:
    """The checkpoint at a local folder or a pyarrow filesystem URI (`s3://...?options`)."""
    if uri is None:
        return None
    if "://" not in uri:
        return ray.train.Checkpoint.from_directory(uri)
    filesystem, path = pa_fs.FileSystem.from_uri(uri)
    return ray.train.Checkpoint(path, filesystem=filesystem)


def save_checkpoint(
    rank: int,
    save_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    folder: Path,
    position: LoopPosition,
    tracker_state: dict,
) -> None:
    """Writes this rank's part of a checkpoint into `folder`.

    What stays the same over a run comes first, so the loop can bind it once
    (`functools.partial`); `save_model(folder)` writes the model in its task's format. A
    disabled scaler (anything but fp16 on a GPU) is saved as None.
    """
    if rank == 0:
        save_model(folder)
        state = {
            "optimizer": optimizer.state_dict(),
            "position": asdict(position),
            "tracker": tracker_state,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        }
        torch.save(state, folder / TRAINING_STATE)
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    torch.save(rng, folder / f"rng_rank{rank}.pt")
    _write_contents(folder, rank)


def _sha256(read: Callable[[int], bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _write_contents(folder: Path, rank: int) -> None:
    """Lists what this rank wrote into its (local, not yet uploaded) part of a checkpoint."""
    contents = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(_CONTENTS_PREFIX):
            continue
        with path.open("rb") as handle:
            contents[path.relative_to(folder).as_posix()] = {
                "bytes": path.stat().st_size,
                "sha256": _sha256(handle.read),
            }
    (folder / _CONTENTS.format(rank=rank)).write_text(json.dumps(contents, indent=1))


def damage(checkpoint: ray.train.Checkpoint) -> list[str]:
    """What is wrong with a checkpoint's files against the contents lists its ranks wrote.

    Read through the checkpoint's own filesystem (local or object storage), so nothing is
    downloaded twice. A checkpoint written before contents lists existed has none to check.

    Returns:
        One line per damaged file (`name: why`); empty when the checkpoint is intact.
    """
    fs, root = checkpoint.filesystem, checkpoint.path
    listed = fs.get_file_info(pa_fs.FileSelector(root, allow_not_found=True))
    lists = sorted(
        info.path for info in listed if posixpath.basename(info.path).startswith(_CONTENTS_PREFIX)
    )
    problems = []
    for list_path in lists:
        try:
            with fs.open_input_stream(list_path) as handle:
                contents = json.loads(handle.read())
        except (OSError, ValueError) as exc:
            problems.append(f"{posixpath.basename(list_path)}: unreadable ({exc})")
            continue
        for name, want in contents.items():
            path = posixpath.join(root, name)
            info = fs.get_file_info(path)
            if info.type != pa_fs.FileType.File:
                problems.append(f"{name}: missing")
            elif info.size != want["bytes"]:
                problems.append(f"{name}: {info.size} bytes, {want['bytes']} were written")
            else:
                with fs.open_input_stream(path) as handle:
                    if _sha256(handle.read) != want["sha256"]:
                        problems.append(f"{name}: its bytes changed since it was written")
    return problems


def resumable_checkpoint(keep: int | None) -> ray.train.Checkpoint | None:
    """The run's latest intact checkpoint, or None for a run that has none yet.

    The latest is what Train hands a restarted run; when it is damaged, this warns naming it
    and takes the most recent intact checkpoint among those Train keeps (`keep` of them:
    `training.checkpoints_to_keep`, named in the error when none is left).

    Raises:
        CheckpointError: the latest checkpoint is damaged and no kept one is intact.
    """
    latest = session.latest_checkpoint()
    if latest is None:
        return None
    problems = damage(latest)
    if not problems:
        return latest
    kept = session.kept_checkpoints()
    earlier = sorted(
        (r for r in kept if r.checkpoint.path != latest.path),
        key=lambda r: r.metrics.get("step", -1),
        reverse=True,
    )
    what = f"checkpoint {latest.path} is damaged ({'; '.join(problems)})"
    for reported in earlier:
        if not damage(reported.checkpoint):
            logger.warning(
                "%s: resuming from the earlier checkpoint %s (step %s) instead",
                what,
                reported.checkpoint.path,
                reported.metrics.get("step"),
            )
            return reported.checkpoint
    raise CheckpointError(
        f"{what}, and no intact earlier checkpoint is kept (training.checkpoints_to_keep: "
        f"{keep}); not starting again from scratch. Delete the run's folder to do that."
    )


def load_training_state(
    folder: Path,
    rank: int,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> tuple[LoopPosition, dict]:
    """Restores optimizer, scaler and this rank's RNG; returns the position and tracker state."""
    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    # An enabled scaler refuses an empty state (what a disabled one would have saved).
    if scaler.is_enabled() and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    rng_file = folder / f"rng_rank{rank}.pt"
    # A group resumed on more ranks than it saved from seeds the newcomers afresh.
    if rng_file.exists():
        rng = torch.load(rng_file, map_location="cpu", weights_only=False)
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
    return LoopPosition(**state["position"]), state["tracker"]
