"""Chaos: one DDP rank's process is SIGKILLed between checkpoints, inside a trial's steps.

In a sweep (`run_sweep`, as `sweeps run` runs it) Tune retries the trial, which resumes from
its last checkpoint and replays the lost steps. What happened is read from the raw report
stream (`tests/chaos/events.py`: every result Tune delivered, with its wall time), not from the
results file, which keeps one row per step and so shows a restart from scratch (the same steps,
and seeded, the same weights) exactly as it shows a resume: after the kill, the trial's first
report is the evaluation after its last checkpoint, and none is at or below that checkpoint's
step. Its final weights equal an uninterrupted trial's.

The same kill on causal-LM SFT with LoRA (packed rows; adapter dropout on) resumes to the
uninterrupted adapters and merged weights: the adapters and their optimizer state come back
from the checkpoint, not fresh adapters on the merged weights.

Two controls, the same kill each: with the trial's Train run (its checkpoints and Ray Train's
record of them) deleted before the retry, the trial starts again from step 0 and the stream
assertion fails on it; with a resume that does not restore the RNG streams, the weights
comparison fails.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cloudpickle
import pytest
import torch
from safetensors.torch import load_file

from sweeps.results.queries import SweepResults
from sweeps.running.runner import run_sweep
from sweeps.spec import SweepSpec, apply_params, parse_spec
from tests.chaos.events import (
    ReportLog,
    assert_went_on_from_checkpoint,
    read_events,
    registered_steps,
)
from tests.chaos.killer import KillAWorkerAfterFirstCheckpoint
from tests.integration import faults
from tests.sweeps.running.test_sweep_e2e import tiny_spec
from trainables.trainer import build_trainer

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]
cloudpickle.register_pickle_by_value(faults)

WEIGHTS = "model.safetensors"
STEPS, EVERY, LR = 30, 10, 2e-3
Weights = dict[str, torch.Tensor]


def one_trial_sweep(
    model_dir: str, files: dict[str, str], storage: Path, sft: bool = False
) -> SweepSpec:
    """One 2-rank trial (dropout on) of the tiny model, 3 evaluations; with `sft`, of the tiny
    Llama (`model_dir`) fine-tuned with LoRA (adapter dropout on) on packed prompt/completion
    rows (`files["train"]`): causal-LM SFT."""
    raw = tiny_spec(model_dir, files, storage, num_samples=1)
    if sft:
        raw["job"] |= {
            "task": "causal_lm",
            "model": {
                "name_or_path": model_dir,
                "method": "lora",
                "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
            },
            "data": {
                "train": files["train"],
                "validation": files["validation"],
                "prompt_column": "p",
                "completion_column": "c",
                "max_length": 64,
                "packing": True,
            },
        }
        raw["job"]["training"] |= {"batch_size": 4, "monitor": "val_loss"}
    raw["name"] = "ranks"
    raw["search"] = {
        "method": "grid",
        "metric": "val_loss" if sft else "val_accuracy",
        "mode": "min" if sft else "max",
        "space": {"optimizer.lr": {"grid": [LR]}},
    }
    raw["scheduler"] = {"name": "fifo"}
    raw["job"]["training"] |= {"max_steps": STEPS, "eval_every": EVERY, "seed": 7}
    raw["job"]["scaling"] = {"num_workers": 2}
    return parse_spec(raw)


class KillARank(KillAWorkerAfterFirstCheckpoint):
    """The kill, then (at once: no rank can checkpoint with one of them dead) the wall time and
    the steps of the checkpoints Train had registered; with `delete_runs`, the Train runs too
    (checkpoints and Train's record of them), so the retry has nothing to resume from."""

    def __init__(self, runs: Path, delete_runs: bool = False) -> None:
        super().__init__(runs)
        self.delete_runs = delete_runs
        self.killed_at = 0.0
        self.steps: list[int] = []

    def run(self) -> None:
        super().run()
        if self.killed is None:
            return
        self.killed_at = time.time()
        self.steps = [s for run in self.runs.iterdir() for s in registered_steps(run)]
        if self.delete_runs:
            for run in list(self.runs.iterdir()):
                shutil.rmtree(run)


def run_killed(spec: SweepSpec, storage: Path, delete_runs: bool = False) -> tuple[KillARank, Path]:
    """Runs `spec` with one rank killed after the first checkpoint; the killer and the sweep's
    raw report stream."""
    stream = storage / "reports.jsonl"
    killer = KillARank(storage / "ranks" / "train", delete_runs)
    killer.start()
    try:
        run_sweep(spec, callbacks=[ReportLog(stream)])
    finally:
        killer.stop()
    assert killer.killed is not None, "no worker was killed"
    # Killed between checkpoints: the last one did not hold the trial's end.
    assert killer.steps and max(killer.steps) < STEPS, killer.steps
    (row,) = SweepResults.of(spec).table()
    assert row["status"] == "TERMINATED"
    return killer, stream


def assert_resumed(killer: KillARank, stream: Path) -> None:
    """The raw stream: the one trial went on from its last checkpoint at the kill."""
    events = read_events(stream)
    (trial_id,) = {e.trial_id for e in events}
    assert_went_on_from_checkpoint(events, trial_id, killer.killed_at, max(killer.steps), EVERY)


def final_weights(checkpoint: str, name: str = WEIGHTS) -> Weights:
    return load_file(str(Path(checkpoint) / name))


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
    spec = one_trial_sweep(tiny_model_dir, separable_files, tmp_path)
    killer, stream = run_killed(spec, tmp_path)

    assert_resumed(killer, stream)
    rows = SweepResults.of(spec).rows()
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert_same(uninterrupted, final_weights(rows[-1]["checkpoint_path"]))


@pytest.mark.timeout(400)
def test_the_same_kill_with_the_trials_checkpoints_deleted_restarts_from_scratch(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    """The stream assertion's control: the trial's Train run deleted right after the kill, the
    retry starts from step 0 (the results file still shows steps 10, 20, 30)."""
    spec = one_trial_sweep(tiny_model_dir, separable_files, tmp_path)
    killer, stream = run_killed(spec, tmp_path, delete_runs=True)

    assert [r["step"] for r in SweepResults.of(spec).rows()] == [10, 20, 30]
    with pytest.raises(AssertionError, match="again after the kill"):
        assert_resumed(killer, stream)


@pytest.mark.timeout(400)
def test_the_same_kill_without_the_rng_restore_ends_elsewhere(
    uninterrupted: Weights, tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    """The weights comparison's control: the trial's own job, resumed by Train after the same
    kill without its RNG streams (dropout draws differ after the resume), ends at other
    weights."""
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


@pytest.fixture(scope="module")
def sft_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny Llama (with a real tokenizer, no pad token) and prompt/completion JSONL rows."""
    from tests.trainables.tasks.test_causal_lm import write_jsonl
    from trainables.tiny_lm import build_tiny_causal_lm, corpus

    root = tmp_path_factory.mktemp("sft")
    rows = [{"p": " ".join(s.split()[:2]), "c": " " + " ".join(s.split()[2:])} for s in corpus(120)]
    return {
        "model": build_tiny_causal_lm(root / "llama", "llama"),
        "train": write_jsonl(root / "train.jsonl", rows[:96]),
        "validation": write_jsonl(root / "val.jsonl", rows[96:]),
    }


@pytest.mark.timeout(400)
def test_a_rank_killed_mid_steps_in_an_sft_lora_sweep_resumes_to_the_uninterrupted_weights(
    sft_files: dict[str, str], tmp_path: Path
) -> None:
    """The same kill on causal-LM SFT (LoRA, packed rows): the adapters, the merged weights and
    the adapters' optimizer state come back from the checkpoint, not fresh adapters."""
    straight = one_trial_sweep(sft_files["model"], sft_files, tmp_path / "straight", sft=True)
    run_sweep(straight)
    uninterrupted = SweepResults.of(straight).rows()[-1]["checkpoint_path"]
    spec = one_trial_sweep(sft_files["model"], sft_files, tmp_path, sft=True)
    killer, stream = run_killed(spec, tmp_path)

    assert_resumed(killer, stream)
    rows = SweepResults.of(spec).rows()
    assert [r["step"] for r in rows] == [10, 20, 30]
    for name in (WEIGHTS, "adapter/adapter_model.safetensors"):
        want = final_weights(uninterrupted, name)
        assert_same(want, final_weights(rows[-1]["checkpoint_path"], name))
