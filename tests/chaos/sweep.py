"""What the chaos scenarios that run `sweeps run` share: a small FIFO sweep of the tiny model
written as a spec file, and the command that runs it joined to the session's Ray runtime (one
Ray per machine, as on a cluster)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import ray
import yaml

from tests.sweeps.running.test_sweep_e2e import tiny_spec


def fifo_sweep(
    model_dir: str,
    files: dict[str, str],
    storage: Path | str,
    name: str,
    trials: int,
    steps: int,
    every: int,
) -> dict[str, Any]:
    """`trials` trials of the tiny model, one after another, `steps` steps, a checkpoint and
    report every `every` steps, stored under `storage` (a folder or an `s3://` URI)."""
    raw = tiny_spec(model_dir, files, Path("unused"), num_samples=trials)
    raw |= {"name": name, "storage_path": str(storage), "scheduler": {"name": "fifo"}}
    raw["job"]["training"] |= {"max_steps": steps, "eval_every": every}
    return raw


def write_spec(folder: Path, raw: dict[str, Any]) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    return spec


def sweeps_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """`python -m sweeps ARGS` and its environment, joined to the session's Ray runtime."""
    env = {**os.environ, "RAY_ADDRESS": str(ray.get_runtime_context().gcs_address)}
    return [sys.executable, "-m", "sweeps", *args], env
