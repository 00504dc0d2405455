"""Chaos: one DDP rank's process is SIGKILLed between checkpoints, inside a trial's steps.

In a sweep (`run_sweep`, as `sweeps run` runs it) Tune retries the trial, which resumes from
its last checkpoint and replays the lost steps: its final weights equal an uninterrupted
trial's. The negative control (the same job and kill, a resume that does not restore the RNG
streams) ends elsewhere, so the comparison can tell.
"""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import pytest
import torch
from safetensors.torch import load_file

from sweeps.results.queries import SweepResults
from sweeps.running.runner import run_sweep
from sweeps.spec import SweepSpec, apply_params, parse_spec
from tests.chaos.killer import KillAWorkerAfterFirstCheckpoint
from tests.integration import faults
from tests.sweeps.test_sweep_e2e import tiny_spec
from trainables.trainer import build_trainer

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]
cloudpickle.register_pickle_by_value(faults)

WEIGHTS = "model.safetensors"
STEPS, EVERY, LR = 30, 10, 2e-3
Weights = dict[str, torch.Tensor]


def one_trial_sweep(model_dir: str, files: dict[str, str], storage: Path) -> SweepSpec:
    """One 2-rank trial (dropout on) of the tiny model, 3 evaluations."""
    raw = tiny_spec(model_dir, files, storage, num_samples=1)
    raw["name"] = "ranks"
    raw["search"] = {
        "method": "grid",
        "metric": "val_accuracy",
        "mode": "max",
        "space": {"optimizer.lr": {"grid": [LR]}},
    }
    raw["scheduler"] = {"name": "fifo"}
    raw["job"]["training"] |= {"max_steps": STEPS, "eval_every": EVERY, "seed": 7}
    raw["job"]["scaling"] = {"num_workers": 2}
    return parse_spec(raw)


def final_weights(checkpoint: str) -> Weights:
    return load_file(str(Path(checkpoint) / WEIGHTS))


def assert_same(a: Weights, b: Weights) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Weights:
    """The trial's final weights when nothing is killed."""
    spec = one_trial_sweep(tiny_model_dir, separable_files, tmp_path_factory.mktemp("straight"))
    run_sweep(spec)
    rows = SweepResults.of(spec).rows()
    assert [r["step"] for r in rows] == [10, 20, 30]
    return final_weights(rows[-1]["checkpoint_path"])


@pytest.mark.timeout(400)
def test_a_rank_killed_mid_steps_in_a_sweep_resumes_to_the_uninterrupted_weights(
    uninterrupted: Weights, tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    killed = one_trial_sweep(tiny_model_dir, separable_files, tmp_path)
    killer = KillAWorkerAfterFirstCheckpoint(tmp_path / "ranks" / "train")
    killer.start()
    try:
        run_sweep(killed)
    finally:
        killer.stop()

    assert killer.killed is not None, "no worker was killed"
    # Killed between checkpoints: the last one did not hold the trial's end.
    assert len(killer.at_checkpoints) < STEPS // EVERY
    (row,) = SweepResults.of(killed).table()
    assert row["status"] == "TERMINATED"
    rows = SweepResults.of(killed).rows()
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert_same(uninterrupted, final_weights(rows[-1]["checkpoint_path"]))


@pytest.mark.timeout(400)
def test_the_same_kill_without_the_rng_restore_ends_elsewhere(
    uninterrupted: Weights, tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    """The control: the trial's own job, resumed by Train after the same kill without its RNG
    streams (dropout draws differ after the resume), ends at other weights."""
    spec = one_trial_sweep(tiny_model_dir, separable_files, tmp_path)
    job = apply_params(spec.job, {"optimizer.lr": LR}, name="control", source="control")
    killer = KillAWorkerAfterFirstCheckpoint(tmp_path / "control")
    killer.start()
    try:
        control = build_trainer(
            job,
            run_name="control",
            storage_path=str(tmp_path),
            max_failures=1,
            train_fn=faults.without_rng_restore(),
        ).fit()
    finally:
        killer.stop()
    assert killer.killed is not None and control.metrics["step"] == STEPS
    assert len(killer.at_checkpoints) < STEPS // EVERY
    with control.checkpoint.as_directory() as folder:
        got = final_weights(folder)
    with pytest.raises(AssertionError):
        assert_same(uninterrupted, got)
