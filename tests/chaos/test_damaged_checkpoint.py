"""Chaos: a run's latest checkpoint is damaged on storage (a file cut short) before it resumes.

The run resumes from the latest intact checkpoint Train still keeps, warning with the damaged
one's name, and ends with the weights an undamaged run ends with; with no intact checkpoint
left it fails naming the damaged file. Never a silent start from scratch.

The first attempt runs in this process (as a sweep runs a one-worker trial: the same run folder
a `TorchTrainer` run leaves); the resume under test is a Ray Train run's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import ray.train
import torch
from safetensors.torch import load

from trainables.config import FinetuneConfig, parse_config
from trainables.in_process import run_in_process
from trainables.trainer import build_trainer

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

WEIGHTS = "model.safetensors"


def job(model_dir: str, files: dict[str, str], keep: int, steps: int = 6) -> FinetuneConfig:
    return parse_config(
        {
            "model": {"name_or_path": model_dir},
            "data": {
                "train": files["train"],
                "validation": files["validation"],
                "text_column": "sentence",
                "label_column": "sentiment",
                "max_length": 32,
            },
            "optimizer": {"lr": 2e-3},
            "training": {
                "batch_size": 16,
                "max_steps": steps,
                "eval_every": 2,
                "seed": 7,
                "checkpoints_to_keep": keep,
            },
            "scaling": {"num_workers": 1, "cpus_per_worker": 2},
        }
    )


def fit(cfg: FinetuneConfig, storage: Path) -> Any:
    return build_trainer(cfg, run_name="run", storage_path=str(storage)).fit()


def first_attempt(cfg: FinetuneConfig, storage: Path) -> tuple[int, Path]:
    """The run's first attempt, in this process: its last step and its latest checkpoint."""
    reports: list[tuple[dict[str, Any], Any]] = []
    run_in_process(
        cfg,
        run_name="run",
        storage_path=str(storage),
        on_report=lambda metrics, checkpoint: reports.append((metrics, checkpoint)),
    )
    metrics, checkpoint = reports[-1]
    return metrics["step"], Path(checkpoint.path)


def cut_short(path: Path) -> None:
    """Truncates a file to half its length: what a copy cut off or a full disk leaves."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)


def worker_logs_mentioning(text: str) -> list[Path]:
    """The running session's worker logs (what a Train worker prints and logs) holding `text`."""
    logs = Path("/tmp/ray/session_latest").resolve() / "logs"
    return [p for p in logs.glob("worker-*") if text in p.read_text(errors="replace")]


@pytest.mark.timeout(300)
def test_a_damaged_latest_checkpoint_resumes_from_an_earlier_one_to_the_same_weights(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files, keep=2)
    step, latest = first_attempt(cfg, tmp_path)
    assert step == 6
    # From bytes, not mapped: the file is cut short next, under any mapping of it.
    want = load((latest / WEIGHTS).read_bytes())
    cut_short(latest / WEIGHTS)

    second = fit(cfg, tmp_path)

    assert second.metrics["step"] == 6
    assert Path(second.checkpoint.path) != latest
    got = load((Path(second.checkpoint.path) / WEIGHTS).read_bytes())
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-7, msg=name)
    assert worker_logs_mentioning(f"checkpoint {latest} is damaged ({WEIGHTS}:")


@pytest.mark.timeout(300)
def test_a_damaged_only_checkpoint_fails_naming_the_file(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    # One evaluation, so one checkpoint: Train keeps the best ones and always the latest.
    cfg = job(tiny_model_dir, separable_files, keep=1, steps=2)
    _, latest = first_attempt(cfg, tmp_path)
    cut_short(latest / WEIGHTS)

    with pytest.raises(ray.train.TrainingFailedError) as failed:
        fit(cfg, tmp_path)

    message = str(failed.value)
    assert f"checkpoint {latest} is damaged ({WEIGHTS}:" in message, message
    assert "training.checkpoints_to_keep: 1" in message
    assert os.path.exists(latest)  # nothing was deleted on the way
