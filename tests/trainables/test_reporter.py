"""The loop reports through the reporter it is handed (`trainables/reporter.py`): the same
reports whichever reporter, a damaged latest checkpoint falls back to the latest intact kept
one, and every run reports at least once (a run begun from another run's last checkpoint
reports the model it holds; a rerun of a finished run of its own reports nothing more)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import ray.train
import torch
from safetensors.torch import load_file

from trainables.checkpointing import CheckpointError, LoopPosition, resumable_checkpoint
from trainables.checkpointing import save_checkpoint as write_checkpoint
from trainables.config import FinetuneConfig, parse_config
from trainables.in_process import run_in_process
from trainables.inputs import TrialInputs
from trainables.loop import run_loop
from trainables.reporter import MemoryReporter

STEPS, EVERY = 20, 10


def job(model_dir: str, files: dict[str, str]) -> FinetuneConfig:
    return parse_config(
        {
            "model": {"name_or_path": model_dir},
            "data": {
                **files,
                "text_column": "sentence",
                "label_column": "sentiment",
                "max_length": 32,
            },
            "optimizer": {"lr": 2e-3},
            "training": {"batch_size": 8, "max_steps": STEPS, "eval_every": EVERY, "seed": 3},
            "scaling": {"num_workers": 1},
        }
    )


def weights(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    return load_file(str(Path(checkpoint.path) / "model.safetensors"))


@pytest.mark.timeout(300)
def test_the_loop_reports_the_same_through_the_in_process_and_the_memory_reporter(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files)
    in_memory = MemoryReporter(tmp_path / "memory")
    run_loop(cfg, in_memory)
    in_process: list[dict[str, Any]] = []
    run_in_process(
        cfg, run_name="run", storage_path=str(tmp_path), on_report=lambda m, _: in_process.append(m)
    )

    assert [r["step"] for r in in_memory.reports] == [EVERY, STEPS]
    assert [r["step"] for r in in_process] == [EVERY, STEPS]
    assert [r["val_loss"] for r in in_memory.reports] == [r["val_loss"] for r in in_process]


@pytest.mark.timeout(300)
def test_a_run_begun_from_another_runs_last_checkpoint_reports_the_model_it_holds_once(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files)
    donor = MemoryReporter(tmp_path / "donor")
    run_loop(cfg, donor)
    last = donor.checkpoints[-1].checkpoint

    copy = MemoryReporter(tmp_path / "copy")
    run_loop(cfg, copy, TrialInputs(start_from=last.path))

    assert [r["step"] for r in copy.reports] == [STEPS]
    assert copy.reports[0]["val_loss"] == pytest.approx(donor.reports[-1]["val_loss"], rel=1e-6)
    mine, theirs = weights(copy.checkpoints[0].checkpoint), weights(last)
    assert all((mine[k] == theirs[k]).all() for k in theirs)

    # The control: a rerun of the donor's own finished run (its own last checkpoint) has
    # reported that model already, and reports nothing more.
    run_loop(cfg, donor)
    assert [r["step"] for r in donor.reports] == [EVERY, STEPS]


def kept_checkpoints(folder: Path, steps: list[int]) -> MemoryReporter:
    """A reporter holding a checkpoint per step, written by the loop's own checkpoint writer."""
    reporter = MemoryReporter(folder / "kept")
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for step in steps:
        part = folder / f"part{step}"
        part.mkdir()

        def save_model(at: Path, step: int = step) -> None:
            (at / "model.bin").write_bytes(bytes([step]) * 64)

        write_checkpoint(0, save_model, optimizer, scaler, part, LoopPosition(step=step), {})
        reporter.report({"step": step}, part)
    return reporter


def damage(checkpoint: ray.train.Checkpoint) -> None:
    with (Path(checkpoint.path) / "model.bin").open("r+b") as handle:
        handle.truncate(10)


def test_an_intact_latest_checkpoint_is_the_one_resumed(tmp_path: Path) -> None:
    reporter = kept_checkpoints(tmp_path, [10, 20, 30])
    resumed = resumable_checkpoint(reporter, keep=3)
    assert resumed is not None and resumed.path == reporter.checkpoints[-1].checkpoint.path


def test_a_damaged_latest_checkpoint_falls_back_to_the_latest_intact_kept_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = kept_checkpoints(tmp_path, [10, 20, 30])
    damage(reporter.checkpoints[-1].checkpoint)

    with caplog.at_level(logging.WARNING):
        resumed = resumable_checkpoint(reporter, keep=3)

    assert resumed is not None and resumed.path == reporter.checkpoints[1].checkpoint.path
    assert reporter.checkpoints[-1].checkpoint.path in caplog.text
    assert "model.bin: 10 bytes, 64 were written" in caplog.text


def test_a_run_whose_kept_checkpoints_are_all_damaged_fails_naming_the_setting(
    tmp_path: Path,
) -> None:
    reporter = kept_checkpoints(tmp_path, [10, 20])
    for kept in reporter.checkpoints:
        damage(kept.checkpoint)

    with pytest.raises(CheckpointError, match=r"training.checkpoints_to_keep: 2"):
        resumable_checkpoint(reporter, keep=2)
