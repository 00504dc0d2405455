"""A W&B-format sweep file over the fine-tuning method and LoRA's rank runs end to end, and
the promoted model says which method it was trained with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeps.results.queries import SweepResults
from sweeps.running.promotion import promote_best
from sweeps.running.runner import run_sweep
from sweeps.spec import load_spec
from sweeps.store.model_versions import verify
from tests.sweeps.running.test_sweep_e2e import tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


@pytest.mark.timeout(900)
def test_a_wandb_sweep_over_method_and_lora_rank_runs_and_promotes(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    job = tiny_spec(tiny_model_dir, separable_files, tmp_path)["job"]
    job["scaling"] = {"num_workers": 1}
    constants: dict[str, Any] = {
        f"{section}.{key}": {"value": value}
        for section, fields in job.items()
        for key, value in fields.items()
    }
    wandb_file = {
        "program": "train.py",
        "name": "tiny-lora",
        "method": "grid",
        "metric": {"name": "eval_accuracy", "goal": "maximize"},
        "parameters": {
            **constants,
            "learning_rate": {"value": 3e-3},
            "finetuning_method": {"values": ["full", "lora", "head"]},
            "lora_r": {"values": [4]},
        },
    }
    path = tmp_path / "tiny-lora.yaml"
    path.write_text(yaml.safe_dump(wandb_file))
    spec = load_spec(path, [f"storage_path={tmp_path}", f"promote.to={tmp_path / 'models'}"])
    assert run_sweep(spec).finished
    rows = SweepResults.of(spec).table()
    assert sorted(r["params"]["model.method"] for r in rows) == ["full", "head", "lora"]
    assert all(r["status"] == "TERMINATED" for r in rows), rows

    promotion = promote_best(spec)
    assert promotion is not None
    manifest = verify(str(tmp_path / "models" / "tiny-lora" / "latest"))
    method = manifest["hyperparameters"]["model.method"]
    assert manifest["model"]["method"] == method
    if method == "lora":
        assert manifest["model"]["lora"]["r"] == 4
        assert "adapter/adapter_model.safetensors" in manifest["files"]
    # The LoRA trial's checkpoints hold its adapter files (what a resume loads).
    adapters = list(tmp_path.glob("tiny-lora/**/adapter/adapter_config.json"))
    assert adapters and all(json.loads(a.read_text())["r"] == 4 for a in adapters)
