"""Chaos: the sweep's driver (`sweeps run`) is SIGKILLed mid-sweep; the same command again.

What happened is read from the raw report stream (`tests/chaos/events.py`: every trial start
and result Tune delivered to either driver, with its wall time), not from the results file,
which keeps one row per (trial, step) and so cannot show a step reported twice or a finished
trial run again: after the kill, no trial that had finished starts or reports again and the
one that had not is the only one that runs; its first report is past its last checkpoint's
step at the kill (it went on from the checkpoint, not from step 0). Each trial is one W&B run
(one id; a finished trial one run file, written by the first driver) whose steps only go up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import ray
import yaml

from sweeps.results.results_file import read_results
from tests.chaos.events import (
    assert_only_unfinished_ran_again,
    assert_went_on_from_checkpoint,
    command_env,
    read_events,
    registered_steps,
)
from tests.chaos.killer import registered_checkpoints
from tests.sweeps.running.test_sweep_e2e import tiny_spec
from tests.wandb_files import offline_runs

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

STEPS, EVERY = 30, 10


@pytest.mark.timeout(600)
def test_a_killed_driver_resumes_without_rerunning_or_repeating_anything(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=2)
    raw["name"] = "killed"
    raw["scheduler"] = {"name": "fifo"}
    raw["job"]["training"] |= {"max_steps": STEPS, "eval_every": EVERY}
    raw["wandb"] = {"mode": "offline", "dir": str(tmp_path / "wb")}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    # The command joins the session's Ray runtime, as on a cluster (one Ray per machine).
    stream = tmp_path / "reports.jsonl"
    env = command_env(
        {**os.environ, "RAY_ADDRESS": str(ray.get_runtime_context().gcs_address)}, stream
    )
    command = [sys.executable, "-m", "sweeps", "run", str(spec)]
    folder = tmp_path / "killed"
    results = folder / "results.parquet"

    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finished: set[str] = set()
    started: set[str] = set()
    train = folder / "train"
    deadline = time.monotonic() + 400
    # Killed once one trial has ended and another has a checkpoint Train registered (one it
    # resumes from; a checkpoint folder still being written is not).
    while time.monotonic() < deadline and driver.poll() is None:
        rows = read_results(str(results)) if results.exists() else []
        finished = {r["trial_id"] for r in rows if r["trial_status"] == "TERMINATED"}
        started = {p.name for p in train.glob("*") if registered_checkpoints(p)} - finished
        if finished and started:
            os.kill(driver.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    killed_at = time.time()
    at_kill = {trial: max(registered_steps(train / trial)) for trial in started}
    output = driver.communicate()[0].decode()
    assert driver.returncode == -signal.SIGKILL, output[-3000:]
    interrupted = started

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)

    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    events = read_events(stream)
    assert_only_unfinished_ran_again(events, killed_at, finished, interrupted)
    for trial in interrupted:
        # Its first report after the kill is past the checkpoint it had then (an orphaned
        # trial process may still have written a later one before Ray stopped it).
        assert_went_on_from_checkpoint(events, trial, killed_at, at_kill[trial], EVERY, exact=False)
    rows = read_results(str(results))
    assert Counter(r["trial_status"] for r in {r["trial_id"]: r for r in rows}.values()) == {
        "TERMINATED": 2
    }
    for trial in interrupted:  # went on from its checkpoint to the end
        steps = sorted(r["step"] for r in rows if r["trial_id"] == trial)
        assert steps == list(range(EVERY, STEPS + 1, EVERY)), (trial, steps)

    runs = [r for r in offline_runs(tmp_path / "wb") if r.job_type == "trial"]
    files = Counter(run.config["trial_id"] for run in runs)
    trial_ids = {r["trial_id"] for r in rows}
    assert set(files) == trial_ids
    # A finished trial's run was written by the first driver only; the resumed trial's run has
    # a file per driver, under one id.
    assert {trial: files[trial] for trial in finished} == dict.fromkeys(finished, 1)
    by_id: dict[str, list] = {}
    for run in runs:
        by_id.setdefault(run.run_id, []).append(run)
    assert len(by_id) == len(trial_ids)  # one W&B run per trial (a resumed one: same id)
    for run_id, parts in by_id.items():
        parts.sort(key=lambda run: str(run.path))
        steps = [h["_step"] for run in parts for h in run.history]
        assert steps == sorted(set(steps)), (run_id, steps)
