"""What a checkpoint holds and how a restarted worker group takes it back.

Layout of one checkpoint folder (Ray merges what each rank writes into it):
    model files (weights, config, tokenizer or        the task's save format (rank 0)
      preprocessing config)
    training_state.pt                                 optimizer, loop position, tracker (rank 0)
    rng_rank{R}.pt                                    RNG streams of rank R (every rank)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.fs as pa_fs
import ray.train
import torch

TRAINING_STATE = "training_state.pt"


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
