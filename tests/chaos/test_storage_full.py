"""Chaos: the sweep's storage fills up mid-sweep (a size-limited tmpfs), then gets space back.

The sweep stops with one clear error naming the storage path, the checkpoints written before
are intact (no part-written one beside them), and the same command, once there is space,
resumes the trial from its last checkpoint and finishes it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import ray.train

from sweeps.results.results_file import read_results
from tests.chaos.killer import SNAPSHOT
from tests.chaos.sweep import fifo_sweep, sweeps_command, write_spec
from trainables.checkpointing import damage

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

STEPS, EVERY = 30, 10


@pytest.fixture
def small_disk(tmp_path: Path, tiny_model_dir: str) -> Iterator[tuple[Path, int]]:
    """A tmpfs with room for one checkpoint of the tiny model and a half, not two."""
    model = Path(tiny_model_dir)
    weights = (model / "model.safetensors").stat().st_size
    # Weights, Adam's two moments and the tokenizer: what one checkpoint holds.
    checkpoint = 3 * weights + (model / "tokenizer.json").stat().st_size
    size = checkpoint * 3 // 2
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs (needs root): {made.stderr.strip()}")
    try:
        yield mount, checkpoint
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def registered(train_dir: Path) -> set[str]:
    snapshot = json.loads((train_dir / SNAPSHOT).read_text())
    return {r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]}


@pytest.mark.timeout(600)
def test_a_full_disk_stops_the_sweep_naming_it_and_the_same_command_resumes_with_space(
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
    small_disk: tuple[Path, int],
) -> None:
    disk, checkpoint = small_disk
    raw = fifo_sweep(tiny_model_dir, separable_files, disk, "full", 1, STEPS, EVERY)
    command, env = sweeps_command("run", str(write_spec(tmp_path, raw)))

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)

    output = first.stdout + first.stderr
    assert first.returncode == 2, output[-3000:]
    last_line = first.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: storage_path: {disk} is full"), last_line
    assert "No space left on device" in last_line
    (trial,) = [p for p in (disk / "full" / "train").iterdir() if p.is_dir()]
    kept = registered(trial)
    on_disk = {p.name for p in trial.glob("checkpoint_*") if p.is_dir()}
    assert kept and on_disk == kept  # the part-written one is gone, the registered ones stay
    for name in kept:
        assert damage(ray.train.Checkpoint.from_directory(str(trial / name))) == [], name
    before = {r["step"]: r["timestamp"] for r in read_results(str(disk / "full/results.parquet"))}
    assert before and max(before) < STEPS

    subprocess.run(["mount", "-o", f"remount,size={10 * checkpoint}", str(disk)], check=True)
    space_back = time.time()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)

    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    rows = read_results(str(disk / "full/results.parquet"))
    assert {r["trial_status"] for r in rows} == {"TERMINATED"}
    assert sorted(r["step"] for r in rows) == list(range(EVERY, STEPS + 1, EVERY))
    # Resumed, not started again: the reports from before the fault are the ones first made.
    for row in rows:
        if row["step"] in before:
            assert row["timestamp"] == before[row["step"]] < space_back, row["step"]
