"""A one-worker job run in the calling process (`trainables/in_process.py`), as a sweep's trial
runs it: it reports every evaluation, keeps what a `TorchTrainer` run keeps, and a run stopped
at a report (as Tune stops a trial) resumes to the weights of one never stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray.train
from safetensors.torch import load_file

from tests.chaos.killer import SNAPSHOT
from trainables.config import FinetuneConfig, parse_config
from trainables.in_process import run_in_process

STEPS, EVERY = 40, 10


def job(model_dir: str, files: dict[str, str], keep: int) -> FinetuneConfig:
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
            "training": {
                "batch_size": 8,
                "max_steps": STEPS,
                "eval_every": EVERY,
                "seed": 3,
                "checkpoints_to_keep": keep,
            },
            "scaling": {"num_workers": 1},
        }
    )


class Reports:
    """Every report's step and checkpoint path; stops the run at `stop_at` as Tune stops a
    trial (its report raises `SystemExit` in the trial's training thread)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.paths: list[str | None] = []
        self.stop_at = stop_at

    def __call__(self, metrics: dict[str, Any], checkpoint: ray.train.Checkpoint | None) -> None:
        self.steps.append(int(metrics["step"]))
        self.paths.append(checkpoint.path if checkpoint is not None else None)
        if metrics["step"] == self.stop_at:
            raise SystemExit(0)


def run(cfg: FinetuneConfig, storage: Path, name: str, reports: Reports) -> None:
    run_in_process(cfg, run_name=name, storage_path=str(storage), on_report=reports)


def weights(checkpoint: str) -> dict[str, Any]:
    return load_file(str(Path(checkpoint) / "model.safetensors"))


@pytest.mark.timeout(300)
def test_an_in_process_run_reports_every_evaluation_and_keeps_what_train_keeps(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    reports = Reports()
    run(job(tiny_model_dir, separable_files, keep=1), tmp_path, "run", reports)

    assert reports.steps == list(range(EVERY, STEPS + 1, EVERY))
    assert all(reports.paths)
    state = json.loads((tmp_path / "run" / SNAPSHOT).read_text())
    registered = {r["checkpoint_dir_name"] for r in state["checkpoint_results"]}
    on_disk = {p.name for p in (tmp_path / "run").glob("checkpoint_*") if p.is_dir()}
    # One kept by score, and the latest (Train never deletes the latest).
    assert on_disk == registered and 1 <= len(on_disk) <= 2
    assert Path(str(reports.paths[-1])).name in on_disk


@pytest.mark.timeout(300)
def test_an_in_process_run_stopped_at_a_report_resumes_to_the_weights_of_one_never_stopped(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files, keep=2)
    whole = Reports()
    run(cfg, tmp_path, "whole", whole)

    stopped = Reports(stop_at=2 * EVERY)
    with pytest.raises(SystemExit):
        run(cfg, tmp_path, "stopped", stopped)
    resumed = Reports()
    run(cfg, tmp_path, "stopped", resumed)

    assert stopped.steps == [EVERY, 2 * EVERY]
    assert resumed.steps == list(range(3 * EVERY, STEPS + 1, EVERY))
    mine, theirs = weights(str(resumed.paths[-1])), weights(str(whole.paths[-1]))
    assert mine.keys() == theirs.keys()
    assert all((mine[k] == theirs[k]).all() for k in mine)
