"""A real sweep on the tiny model: 6 trials, each a 2-worker TorchTrainer, then a resume."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from sweeps.errors import SpecError
from sweeps.runner import best_trial, run_sweep, trial_table
from sweeps.spec import parse_spec

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def tiny_spec(model_dir: str, files: dict[str, str], storage: Path, **search: object) -> dict:
    return {
        "name": "tiny",
        "storage_path": str(storage),
        "job": {
            "model": {"name_or_path": model_dir},
            "data": {
                "train": files["train"],
                "validation": files["validation"],
                "text_column": "sentence",
                "label_column": "sentiment",
                "max_length": 32,
            },
            "training": {
                "batch_size": 16,
                "max_steps": 6,
                "eval_every": 2,
                "monitor": "val_accuracy",
                "checkpoints_to_keep": 1,
            },
            "scaling": {"num_workers": 2},
        },
        "search": {
            "method": "tpe",
            "metric": "val_accuracy",
            "mode": "max",
            "num_samples": 6,
            "seed": 1,
            "space": {"optimizer.lr": {"loguniform": [1e-5, 5e-3]}},
            **search,
        },
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
    }


@pytest.mark.timeout(900)
def test_tpe_asha_sweep_finishes_picks_the_best_and_resumes_without_rerunning(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    spec = parse_spec(tiny_spec(tiny_model_dir, separable_files, tmp_path))
    best = run_sweep(spec)
    rows = trial_table(spec)
    assert len(rows) == 6 and all(r["status"] == "TERMINATED" for r in rows)

    assert best is not None
    top = max(r["best"] for r in rows if r["best"] is not None and math.isfinite(r["best"]))
    assert best.metrics["val_accuracy"] == top
    assert best.params == next(r["params"] for r in rows if r["trial_id"] == best.trial_id)
    assert best.checkpoint_path and Path(best.checkpoint_path, "model.safetensors").exists()

    train_runs = tmp_path / "tiny" / "train"
    mtimes = {p.name: os.path.getmtime(p) for p in train_runs.iterdir()}
    assert len(mtimes) == 6
    again = run_sweep(spec)  # same name, same spec: resume; nothing is rerun
    assert again == best
    assert {p.name: os.path.getmtime(p) for p in train_runs.iterdir()} == mtimes

    changed = parse_spec(tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=7))
    with pytest.raises(SpecError, match="num_samples"):
        run_sweep(changed)
    assert best_trial(spec) == best
