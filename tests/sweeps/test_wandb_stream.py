"""Trials stream to W&B: read back from W&B's own offline run files; W&B failing never fails a
sweep; secrets never land in anything a sweep writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.tune
import yaml

from sweeps.results.queries import SweepResults
from sweeps.results.results import ResultsLog
from sweeps.running.callbacks import wandb_streamer
from sweeps.running.runner import run_sweep
from sweeps.running.tuner import build_tuner
from sweeps.spec import parse_spec
from tests.sweeps.test_contract import ITERATIONS, SPACES, cheap_trainable, sweep_spec
from tests.sweeps.test_sweep_e2e import tiny_spec
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


def session_address() -> str:
    return str(ray.get_runtime_context().gcs_address)


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


@pytest.mark.timeout(300)
def test_unreachable_wandb_warns_and_the_sweep_finishes_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    spec, grid, seconds = cheap_sweep(
        tmp_path, {"mode": "online", "dir": str(tmp_path / "wb"), "init_timeout_s": 5}
    )
    assert len(grid) == 4 and not grid.errors
    assert all(r["status"] == "TERMINATED" for r in SweepResults.of(spec).table())
    assert "W&B logging stopped" in caplog.text
    assert seconds < 90


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
        assert run.config["scaling.num_workers"] == 2


SENTINELS = {
    "WANDB_API_KEY": "wandbsentinel" + "7" * 27,
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000KEY1",
    "AWS_SECRET_ACCESS_KEY": "awssecretsentinel/0000000000000000000000",
}


@pytest.mark.timeout(600)
def test_secrets_in_the_environment_appear_in_no_file_the_sweep_writes(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=2)
    raw["wandb"] = {"mode": "offline", "dir": str(tmp_path / "wb")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    # The command joins the session's Ray runtime: a second local instance on one machine
    # breaks Ray's state-API autodetection (Train's placement-group cleaner then dies).
    env = {**os.environ, **SENTINELS, "RAY_ADDRESS": session_address()}
    out = subprocess.run(
        [sys.executable, "-m", "sweeps", "run", str(path)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    session = Path("/tmp/ray/session_latest").resolve()
    places = [tmp_path, session / "logs"]
    files = [p for place in places for p in place.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "params.json" for p in files)
    for secret in SENTINELS.values():
        assert secret not in out.stdout + out.stderr
        leaks = [p for p in files if secret.encode() in p.read_bytes()]
        assert not leaks, leaks
