"""Real sweeps on the tiny model, each trial a 2-worker TorchTrainer: tpe+asha, grid (interrupted
and resumed) and random (from a W&B sweep file)."""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from sweeps import cli
from sweeps.errors import SpecError
from sweeps.results.queries import BestTrial, SweepResults
from sweeps.running.runner import run_sweep
from sweeps.spec import SweepSpec, parse_spec

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
            # One worker with both CPUs: trials one at a time as before, and half the processes
            # to start per trial (the 2-rank path has its own tests: test_ddp_loop, the S3
            # promotion sweep, PBT, vision).
            "scaling": {"num_workers": 1, "cpus_per_worker": 2},
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
        "wandb": {"mode": "disabled"},  # the W&B tests turn it on
    }


def assert_finished_with_the_true_best(
    spec: SweepSpec, best: BestTrial | None, trials: int
) -> list:
    rows = SweepResults.of(spec).table()
    assert len(rows) == trials and all(r["status"] == "TERMINATED" for r in rows), rows
    assert best is not None
    pick = max if spec.search.mode == "max" else min
    top = pick(r["best"] for r in rows if r["best"] is not None and math.isfinite(r["best"]))
    assert best.metrics[spec.search.metric] == top
    assert best.params == next(r["params"] for r in rows if r["trial_id"] == best.trial_id)
    assert Path(best.checkpoint.path, "model.safetensors").exists()
    return rows


@pytest.fixture(scope="module")
def tpe_sweep(
    ray_session: None,
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SweepSpec, BestTrial | None, Path]:
    """One tpe+asha sweep of 6 trials, shared by the tests that read it."""
    storage = tmp_path_factory.mktemp("tpe")
    spec = parse_spec(tiny_spec(tiny_model_dir, separable_files, storage))
    return spec, run_sweep(spec).best, storage


@pytest.mark.timeout(900)
def test_tpe_asha_sweep_finishes_picks_the_best_and_resumes_without_rerunning(
    tpe_sweep: tuple[SweepSpec, BestTrial | None, Path],
    tiny_model_dir: str,
    separable_files: dict[str, str],
) -> None:
    spec, best, tmp_path = tpe_sweep
    assert_finished_with_the_true_best(spec, best, 6)

    train_runs = tmp_path / "tiny" / "train"
    mtimes = {p.name: os.path.getmtime(p) for p in train_runs.iterdir()}
    assert len(mtimes) == 6
    again = run_sweep(spec).best  # same name, same spec: resume; nothing is rerun
    assert again == best
    assert {p.name: os.path.getmtime(p) for p in train_runs.iterdir()} == mtimes

    changed = parse_spec(tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=7))
    with pytest.raises(SpecError, match="num_samples"):
        run_sweep(changed)
    assert SweepResults.of(spec).best() == best


def train_runs(folder: Path) -> dict[str, float]:
    return {p.name: os.path.getmtime(p) for p in folder.iterdir()} if folder.exists() else {}


@pytest.mark.timeout(900)
def test_grid_sweep_interrupted_by_ctrl_c_resumes_only_what_is_left(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path)
    raw["name"] = "tiny-grid"
    raw["search"] |= {
        "method": "grid",
        "space": {"optimizer.lr": {"choice": [3e-3, 1e-5]}, "training.seed": {"grid": [1, 2]}},
    }
    raw["scheduler"] = {"name": "fifo"}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "tiny-grid" / "train"

    # The real command, stopped with Ctrl-C once two trials are done and a third runs.
    # It joins the session's Ray runtime: a second local instance on one machine breaks Ray's
    # state-API autodetection (Train's placement-group cleaner then dies).
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    cli = subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(path)], env=env)
    deadline = time.monotonic() + 300
    while len(train_runs(runs)) < 3 and cli.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    cli.send_signal(signal.SIGINT)
    assert cli.wait(timeout=120) is not None

    spec = parse_spec(raw)
    done = {r["trial_id"] for r in SweepResults.of(spec).table() if r["status"] == "TERMINATED"}
    assert 2 <= len(done) < 4
    finished = {k: v for k, v in train_runs(runs).items() if k in done}

    best = run_sweep(spec).best  # the same sweep again: resumes
    rows = assert_finished_with_the_true_best(spec, best, 4)
    points = sorted((r["params"]["optimizer.lr"], r["params"]["training.seed"]) for r in rows)
    assert points == sorted((lr, seed) for lr in (3e-3, 1e-5) for seed in (1, 2))
    after = train_runs(runs)
    assert len(after) == 4
    assert {k: after[k] for k in finished} == finished  # finished trials were not rerun


@pytest.mark.timeout(900)
def test_random_sweep_from_an_unchanged_wandb_file(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    job = tiny_spec(tiny_model_dir, separable_files, tmp_path)["job"]
    del job["training"]["monitor"]  # trials then keep their best checkpoints by the target
    constants: dict[str, Any] = {
        f"{section}.{key}": {"value": value}
        for section, fields in job.items()
        for key, value in fields.items()
    }
    wandb_file = {
        "program": "train.py",
        "name": "tiny-random",
        "method": "random",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "run_cap": 4,
        "parameters": {
            **constants,
            "learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 5e-3},
            "seed": {"values": [1, 2]},
        },
    }
    path = tmp_path / "tiny-random.yaml"
    path.write_text(yaml.safe_dump(wandb_file))
    from sweeps.spec import load_spec

    spec = load_spec(path, [f"storage_path={tmp_path}"])
    assert (spec.search.method, spec.search.metric, spec.search.mode) == (
        "random",
        "val_loss",
        "min",
    )
    best = run_sweep(spec).best
    rows = assert_finished_with_the_true_best(spec, best, 4)
    assert all(1e-5 <= r["params"]["optimizer.lr"] <= 5e-3 for r in rows)
    assert {r["params"]["training.seed"] for r in rows} <= {1, 2}


def tensorboard_tags(path: Path) -> set[str]:
    """Scalar tags in a TensorBoard event file (TFRecords of tensorboardX's Event protos)."""
    from tensorboardX.proto import event_pb2

    data, pos, tags = path.read_bytes(), 0, set()
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[pos + 12 : pos + 12 + length])
        tags |= {value.tag for value in event.summary.value}
        pos += 12 + length + 4
    return tags


@pytest.mark.timeout(300)
def test_report_renders_plots_that_open_and_trials_have_tensorboard_files(
    tpe_sweep: tuple[SweepSpec, BestTrial | None, Path],
) -> None:
    import matplotlib.image

    spec, best, storage = tpe_sweep
    path = storage / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    assert cli.main(["report", str(path)]) == 0

    out = storage / spec.name / "report"
    page = (out / "report.html").read_text()
    plots = [
        "learning_curves",
        "parallel_coordinates",
        "metric_vs_optimizer.lr",
        "importance",
        "asha_rungs",
    ]
    for name in plots:
        image = matplotlib.image.imread(out / f"{name}.png")  # decodes: a viewer opens it
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.01, name
        assert f'alt="{name}"' in page and "data:image/png;base64," in page
    assert best is not None and best.trial_id in page

    trial_dirs = [p for p in (storage / spec.name).iterdir() if (p / "params.json").exists()]
    assert len(trial_dirs) == 6
    for folder in trial_dirs:
        (events,) = folder.glob("events.out.tfevents.*")
        assert "ray/tune/val_accuracy" in tensorboard_tags(events)
