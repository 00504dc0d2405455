"""Trials stream to W&B: read back from W&B's own offline run files; W&B failing never fails a
sweep (secrets: tests/chaos/test_secrets.py)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.tune

from sweeps.results.queries import SweepResults
from sweeps.results.results_log import ResultsLog
from sweeps.running.callbacks import wandb_streamer
from sweeps.running.runner import run_sweep
from sweeps.running.tuner import build_tuner
from sweeps.spec import parse_spec
from tests.sweeps.cheap import ITERATIONS, cheap_trainable
from tests.sweeps.running.test_contract import SPACES, sweep_spec
from tests.sweeps.running.test_sweep_e2e import tiny_spec
from tests.wandb_files import OfflineRun, offline_runs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


class Nine:
    def __call__(self, params: dict[str, Any]) -> int:
        return ITERATIONS


def flaky_trainable(config: dict[str, Any], marker_dir: str) -> None:
    """The cheap learning curve; the seed-1 trial with the larger lr crashes once at report 4."""
    quality = 1.0 - abs(math.log10(config["optimizer.lr"]) + 3.5) / 3
    quality -= 0.01 * config["training.seed"]  # no ties: the best trial is one trial
    marker = Path(marker_dir, "crashed")
    for step in range(1, ITERATIONS + 1):
        ray.tune.report({"val_accuracy": quality * step / ITERATIONS, "step": step})
        flaky = config["training.seed"] == 1 and config["optimizer.lr"] > 1e-4
        if step == 4 and flaky and not marker.exists():
            marker.write_text("x")
            raise RuntimeError("injected crash after report 4")


def cheap_sweep(tmp_path: Path, wandb: dict[str, Any], trainable: Any = cheap_trainable) -> Any:
    spec = sweep_spec("grid", "fifo", SPACES["grid"])
    spec = spec.model_copy(
        update={"storage_path": str(tmp_path), "wandb": spec.wandb.model_copy(update=wandb)}
    )
    results = SweepResults.of(spec)
    callbacks: list[Any] = [ResultsLog(results.uri, Nine())]
    streamer = wandb_streamer(spec, Nine(), results.folder)
    if streamer is not None:
        callbacks.append(streamer)
    started = time.monotonic()
    grid = build_tuner(
        spec,
        trainable,
        max_t=ITERATIONS,
        max_concurrent=2,
        storage=str(tmp_path),
        callbacks=callbacks,
    ).fit()
    return spec, grid, time.monotonic() - started


def by_job_type(runs: list[OfflineRun], job_type: str) -> list[OfflineRun]:
    return [r for r in runs if r.job_type == job_type]


@pytest.mark.timeout(300)
def test_offline_runs_mirror_every_trial_and_a_retried_trial_stays_one_run(tmp_path: Path) -> None:
    trainable = ray.tune.with_parameters(flaky_trainable, marker_dir=str(tmp_path))
    spec, grid, _ = cheap_sweep(
        tmp_path,
        {"mode": "offline", "dir": str(tmp_path / "wb"), "group": "g1", "tags": ("t",)},
        trainable,
    )
    assert (tmp_path / "crashed").exists()  # the crash happened, and Tune retried the trial
    assert not grid.errors and len(grid) == 4

    runs = offline_runs(tmp_path / "wb")
    trials = by_job_type(runs, "trial")
    assert len(trials) == 4 and len({r.run_id for r in trials}) == 4  # one run per trial
    rows = SweepResults.of(spec).rows()
    for run in trials:
        trial_id = run.config["trial_id"]
        assert run.run_id == f"{spec.name}-{trial_id}" and run.name == f"{spec.name}/{trial_id}"
        assert run.group == "g1"
        params = next(
            r["params"] for r in SweepResults.of(spec).table() if r["trial_id"] == trial_id
        )
        assert {k: run.config[k] for k in params} == params
        steps = [h["_step"] for h in run.history]
        assert steps == list(range(1, ITERATIONS + 1))  # every report once, retried or not
        reported = sorted((r["step"], r["val_accuracy"]) for r in rows if r["trial_id"] == trial_id)
        assert [(h["step"], pytest.approx(h["val_accuracy"])) for h in run.history] == reported
        assert {k for h in run.history for k in h if not k.startswith("_")} == {
            "step",
            "val_accuracy",
        }
        assert run.summary["best_val_accuracy"] == pytest.approx(max(v for _, v in reported))

    (sweep_run,) = by_job_type(runs, "sweep")
    assert sweep_run.config["search"]["method"] == "grid"
    assert sweep_run.config["search"]["space"]["optimizer.lr"] == {"choice": [1e-5, 1e-3]}
    best = grid.get_best_result("val_accuracy", "max", scope="all")
    assert sweep_run.summary["best_trial_id"] == best.metrics["trial_id"]
    (table_row,) = [h for h in sweep_run.history if "trials" in h]
    table = json.loads(
        next(sweep_run.path.parent.rglob(Path(table_row["trials"]["path"]).name)).read_text()
    )
    assert len(table["data"]) == 4 and "stopped_by_scheduler" in table["columns"]


@pytest.mark.timeout(600)
def test_a_tiny_model_sweep_logs_resolved_jobs_and_every_report(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=2)
    raw["scheduler"] = {"name": "fifo"}
    raw["wandb"] = {"mode": "offline", "dir": str(tmp_path / "wb")}
    spec = parse_spec(raw)
    run_sweep(spec)
    rows = SweepResults.of(spec).rows()
    trials = by_job_type(offline_runs(tmp_path / "wb"), "trial")
    assert len(trials) == 2
    for run in trials:
        mine = sorted(
            (r for r in rows if r["trial_id"] == run.config["trial_id"]), key=lambda r: r["step"]
        )
        assert [h["_step"] for h in run.history] == [r["step"] for r in mine]
        for logged, reported in zip(run.history, mine, strict=True):
            for key in ("train_loss", "val_loss", "val_accuracy", "learning_rate"):
                assert logged[key] == pytest.approx(reported[key])
        assert run.config["model.name_or_path"] == tiny_model_dir
        assert run.config["optimizer.lr"] == mine[0]["param.optimizer.lr"]
        for key, value in raw["job"]["scaling"].items():
            assert run.config[f"scaling.{key}"] == value
