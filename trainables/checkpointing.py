"""What a checkpoint holds and how a restarted worker group takes it back.

Layout of one checkpoint folder (Ray merges what each rank writes into it):
    model.safetensors, config.json, tokenizer files   `save_pretrained` (rank 0)
    training_state.pt                                 optimizer, loop position, tracker (rank 0)
    rng_rank{R}.pt                                    RNG streams of rank R (every rank)
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRAINING_STATE = "training_state.pt"


@dataclass
class LoopPosition:
    """Where the loop is: optimizer steps done, epoch, micro-batches done in that epoch."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    stopped: bool = False


def save_checkpoint(
    folder: Path,
    rank: int,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    position: LoopPosition,
    tracker_state: dict,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Writes this rank's part of a checkpoint into `folder`."""
    if rank == 0:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        state = {
            "optimizer": optimizer.state_dict(),
            "position": asdict(position),
            "tracker": tracker_state,
            "scaler": scaler.state_dict() if scaler is not None else None,
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
    scaler: torch.amp.GradScaler | None,
) -> tuple[LoopPosition, dict]:
    """Restores optimizer, scaler and this rank's RNG; returns the position and tracker state."""
    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"] is not None:
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
