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

How a checkpoint folder reaches the run's storage (moved when local, removed again on a full
disk) is `trainables.train_reporters.persist_checkpoint`.
"""

from __future__ import annotations

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

from trainables.errors import FinetuneError

if TYPE_CHECKING:
    from trainables.reporter import Reporter

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


def resumable_checkpoint(reporter: Reporter, keep: int | None) -> ray.train.Checkpoint | None:
    """The run's latest intact checkpoint, or None for a run that has none yet.

    The latest is what the run's reporter restores; when it is damaged, this warns naming it
    and takes the most recent intact checkpoint among those the run keeps (`keep` of them:
    `training.checkpoints_to_keep`, named in the error when none is left).

    Raises:
        CheckpointError: the latest checkpoint is damaged and no kept one is intact.
    """
    latest = reporter.restore()
    if latest is None:
        return None
    problems = damage(latest)
    if not problems:
        return latest
    kept = reporter.kept()
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
