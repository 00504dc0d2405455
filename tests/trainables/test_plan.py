"""The loop's step arithmetic and position: a job's plan, the epoch roll-over, and what a
checkpoint carries of them. Expected values are worked out by hand in each case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainables.checkpointing import (
    TRAINING_STATE,
    LoopPosition,
    load_training_state,
    save_checkpoint,
)
from trainables.config import FinetuneConfig
from trainables.data import epoch_batches
from trainables.plan import plan_job


def job(batch_size: int, workers: int = 1, **training: Any) -> FinetuneConfig:
    return FinetuneConfig.model_validate(
        {
            "data": {"builtin": "demo"},
            "training": {"batch_size": batch_size, **training},
            "scaling": {"num_workers": workers},
        }
    )


# rows, batch, world, training, then by hand: batches/epoch, steps/epoch, total, every, eval steps
PLANS = {
    # 480 / (16*2) = 15 batches; ceil(15/4) = 4 steps (the 4th takes 3); 3 epochs = 12.
    "eval-every-4": (480, 16, 2, {"grad_accum_steps": 4, "epochs": 3, "eval_every": 4},
                     15, 4, 12, 4, [4, 8, 12]),
    # Every 5 steps, and once more at the end: 5, 10, 12.
    "eval-every-5": (480, 16, 2, {"grad_accum_steps": 4, "epochs": 3, "eval_every": 5},
                     15, 4, 12, 5, [5, 10, 12]),
    # max_steps overrides epochs; the last step evaluates even off the cadence.
    "max-steps-7": (480, 16, 2, {"grad_accum_steps": 4, "epochs": 3, "eval_every": 4,
                                 "max_steps": 7},
                    15, 4, 7, 4, [4, 7]),
    "eval-every-epoch": (480, 16, 2, {"grad_accum_steps": 4, "epochs": 3, "eval_every": "epoch"},
                         15, 4, 12, 4, [4, 8, 12]),
    # 100 / (8*3) -> 5 batches; ceil(5/2) = 3 steps; 2 epochs = 6.
    "uneven-3-ranks": (100, 8, 3, {"grad_accum_steps": 2, "epochs": 2},
                       5, 3, 6, 3, [3, 6]),
    # No accumulation: 50 / 10 = 5 steps an epoch.
    "one-rank-no-accum": (50, 10, 1, {"epochs": 2, "eval_every": 3},
                          5, 5, 10, 3, [3, 6, 9, 10]),
}  # fmt: skip


@pytest.mark.parametrize("case", PLANS.values(), ids=PLANS.keys())
def test_plan_job_matches_hand_computed_plan(case: tuple) -> None:
    rows, batch, world, training, per_epoch, steps_per_epoch, total, every, evals = case
    plan = plan_job(job(batch, world, **training), rows, world)
    assert plan.batches_per_epoch == per_epoch
    assert plan.steps_per_epoch == steps_per_epoch
    assert plan.total_steps == total
    assert plan.eval_every == every
    assert [s for s in range(1, total + 1) if plan.evaluates_at(s)] == evals
    assert plan.evaluations == len(evals)


def test_plan_job_defaults_to_the_jobs_own_workers() -> None:
    # 480 / (16*3) = 10 batches.
    assert plan_job(job(16, workers=3), 480).batches_per_epoch == 10


# rows, batch, world, batches per epoch by hand: ceil(rows / (batch * world))
BATCH_COUNTS = [
    (480, 16, 2, 15),
    (100, 8, 3, 5),
    (7, 4, 1, 2),
    (33, 5, 4, 2),
    (64, 16, 4, 1),
    (65, 16, 4, 2),
    (1000, 3, 7, 48),
]


@pytest.mark.parametrize("group_by_length", [True, False])
@pytest.mark.parametrize(("rows", "batch", "world", "expected"), BATCH_COUNTS)
def test_plan_batches_per_epoch_is_what_epoch_batches_gives_every_rank(
    rows: int, batch: int, world: int, expected: int, group_by_length: bool
) -> None:
    plan = plan_job(job(batch, world), rows, world)
    assert plan.batches_per_epoch == expected
    lengths = np.random.default_rng(rows).integers(1, 40, size=rows)
    for rank in range(world):
        batches = epoch_batches(lengths, batch, world, rank, 3, 1, group_by_length)
        assert len(batches) == expected


# before (step, epoch, batches_done), batches taken, batches per epoch, after
ADVANCES = {
    "mid-epoch": ((0, 0, 0), 2, 5, (1, 0, 2)),
    "to-the-short-last-group": ((1, 0, 2), 2, 5, (2, 0, 4)),
    "short-last-group-rolls-over": ((2, 0, 4), 1, 5, (3, 1, 0)),
    "full-last-group-rolls-over": ((5, 2, 2), 2, 4, (6, 3, 0)),
    "first-group-of-next-epoch": ((3, 1, 0), 2, 5, (4, 1, 2)),
    "one-batch-epochs": ((7, 7, 0), 1, 1, (8, 8, 0)),
}


@pytest.mark.parametrize("case", ADVANCES.values(), ids=ADVANCES.keys())
def test_loop_position_advances_one_step(case: tuple) -> None:
    before, taken, per_epoch, after = case
    pos = LoopPosition(*before)
    pos.advance(taken, per_epoch)
    assert (pos.step, pos.epoch, pos.batches_done, pos.stopped) == (*after, False)


@pytest.mark.parametrize(
    ("batches_done", "per_epoch", "after"),
    [
        (4, 3, (9, 2, 0)),  # saved at 4 of 6 batches, resumed where epochs have 3: epoch over
        (2, 3, (9, 1, 2)),  # still inside the shorter epoch: unchanged
    ],
)
def test_resumed_position_refits_to_a_shorter_epoch_without_counting_a_step(
    batches_done: int, per_epoch: int, after: tuple
) -> None:
    pos = LoopPosition(step=9, epoch=1, batches_done=batches_done)
    pos.advance(0, per_epoch, steps=0)
    assert (pos.step, pos.epoch, pos.batches_done) == after


class _Pretrained:
    def save_pretrained(self, folder: Path) -> None:
        (folder / "config.json").write_text("{}")


def _save(folder: Path, scaler: torch.amp.GradScaler, position: LoopPosition) -> None:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    tracker = {"mode": "min", "best": 0.5, "evals_since_best": 1, "lr_scale": 1.0}
    save_checkpoint(0, _Pretrained().save_pretrained, optimizer, scaler, folder, position, tracker)


def _load(folder: Path, scaler: torch.amp.GradScaler) -> tuple[LoopPosition, dict]:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    return load_training_state(folder, 0, optimizer, scaler)


def test_checkpoint_keeps_position_and_saves_a_disabled_scaler_as_none(tmp_path: Path) -> None:
    _save(tmp_path, torch.amp.GradScaler("cpu", enabled=False), LoopPosition(12, 3, 0, True))
    state = torch.load(tmp_path / TRAINING_STATE, weights_only=False)
    assert state["scaler"] is None
    assert state["position"] == {"step": 12, "epoch": 3, "batches_done": 0, "stopped": True}
    assert set(state) == {"optimizer", "position", "tracker", "scaler"}
    position, tracker = _load(tmp_path, torch.amp.GradScaler("cpu", enabled=False))
    assert position == LoopPosition(12, 3, 0, True)
    assert tracker["best"] == 0.5


def test_enabled_scaler_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path, torch.amp.GradScaler("cpu", init_scale=64.0), LoopPosition(1, 0, 2))
    assert torch.load(tmp_path / TRAINING_STATE, weights_only=False)["scaler"]["scale"] == 64.0
    scaler = torch.amp.GradScaler("cpu")  # 65536 until the checkpoint says otherwise
    _load(tmp_path, scaler)
    assert scaler.get_scale() == 64.0


def test_enabled_scaler_resumes_from_a_checkpoint_without_scaler_state(tmp_path: Path) -> None:
    _save(tmp_path, torch.amp.GradScaler("cpu", enabled=False), LoopPosition(1, 0, 2))
    scaler = torch.amp.GradScaler("cpu")
    position, _ = _load(tmp_path, scaler)
    assert scaler.get_scale() == 2.0**16 and position == LoopPosition(1, 0, 2)
