"""Image classification under real Ray on a tiny random timm model over an image folder of real
scanned digits: a sweep (one-worker trials, run in their trial processes) whose promoted model
loads and classifies, and an exact resume of a 2-rank DDP worker group SIGKILLed after its
first checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import torch
from safetensors.torch import load_file

from tests.integration import faults
from trainables.config import FinetuneConfig, parse_config
from trainables.trainer import build_trainer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]
cloudpickle.register_pickle_by_value(faults)

# Augmentation that draws from every random source the loop has: crops, flips, RandAugment,
# jitter and mixup, so an exact resume shows that all of them are redrawn as before.
AUGMENT = {"randaugment_magnitude": 9, "color_jitter": 0.3, "mixup_alpha": 0.4, "hflip": 0.5}


def vision_job(model_dir: str, train: str, **training: Any) -> dict[str, Any]:
    return {
        "model": {"name_or_path": model_dir, "drop_path": 0.1},
        "data": {"train": train, "validation_fraction": 0.2, "test_fraction": 0.2},
        "augment": AUGMENT,
        "optimizer": {"lr": 3e-3},
        "training": {"batch_size": 8, "max_steps": 8, "eval_every": 3, "seed": 3, **training},
        "scaling": {"num_workers": 2},
    }


@pytest.mark.timeout(600)
def test_a_vision_sweep_promotes_a_model_that_loads_and_classifies(
    tiny_vision_dir: str, digit_folder: str, tmp_path: Path
) -> None:
    from PIL import Image

    from sweeps.running.promotion import promote_best
    from sweeps.running.runner import run_sweep
    from sweeps.spec import parse_spec
    from sweeps.store.model_versions import verify
    from trainables.tasks.saved import load_classifier

    spec = parse_spec(
        {
            "name": "vision-tiny",
            "storage_path": str(tmp_path / "runs"),
            # One worker per trial: the DDP path is the kill test's below, promotion is this one's.
            "job": vision_job(tiny_vision_dir, digit_folder)
            | {"scaling": {"num_workers": 1, "cpus_per_worker": 2}},
            "search": {
                "method": "grid",
                "metric": "val_accuracy",
                "mode": "max",
                "space": {"optimizer.lr": {"grid": [1e-3, 1e-2]}},
            },
            "scheduler": {"name": "fifo"},
            "promote": {"to": str(tmp_path / "models")},
            "wandb": {"mode": "disabled"},
        }
    )
    outcome = run_sweep(spec)
    assert outcome.finished
    promotion = promote_best(spec)
    assert promotion is not None
    manifest = verify(str(tmp_path / "models" / "vision-tiny" / "latest"))
    assert set(manifest["test_metrics"]) >= {"test_accuracy", "test_loss"}
    classify = load_classifier(str(tmp_path / "models" / "vision-tiny" / "latest"))
    assert classify(Image.open(Path(digit_folder, "one", "0.png"))) in {"one", "zero"}


def fit(cfg: FinetuneConfig, storage: Path, name: str, **kwargs: Any) -> Any:
    return build_trainer(cfg, run_name=name, storage_path=str(storage), **kwargs).fit()


@pytest.mark.timeout(600)
def test_a_killed_vision_worker_group_resumes_to_the_same_weights(
    tiny_vision_dir: str, digit_folder: str, tmp_path: Path
) -> None:
    cfg = parse_config(vision_job(tiny_vision_dir, digit_folder, max_steps=7, eval_every=3))
    straight = fit(cfg, tmp_path, "straight")
    markers = tmp_path / "markers"
    markers.mkdir()
    resumed = fit(
        cfg,
        tmp_path,
        "resumed",
        max_failures=1,
        train_fn=faults.sigkill_after_first_checkpoint(str(markers)),
    )
    names = {p.name for p in markers.iterdir()}
    # The first rank to die may take the other down before it writes its marker.
    assert names & {"killed-rank0", "killed-rank1"}, names
    assert {"resumed-rank0", "resumed-rank1"} <= names, names
    assert straight.metrics["step"] == resumed.metrics["step"] == 7
    with straight.checkpoint.as_directory() as a, resumed.checkpoint.as_directory() as b:
        weights_a = load_file(str(Path(a) / "model.safetensors"))
        weights_b = load_file(str(Path(b) / "model.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=1e-5, atol=1e-6)
