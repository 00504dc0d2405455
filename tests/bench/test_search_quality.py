"""The search-quality replay harness on a synthetic table whose answer is known by hand."""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.search_quality import (
    METHODS,
    Curve,
    ReplayTask,
    Table,
    end_only,
    percentile,
    replay,
)

#: Four configurations, one evaluation each: one reaches val 0.9 after 5 s, three reach 0.5
#: after 10 s. They differ only in optimizer x freeze, so random search (independent uniform
#: choices) picks each with probability 1/4.
HIT_SECONDS, MISS_SECONDS = 5.0, 10.0


def write_table(path: Path, evaluations: int = 1) -> Path:
    """The table above; with `evaluations` > 1 each run reports that many times (the same
    scores, the seconds split evenly)."""
    rows = []
    for config_id, (optimizer, freeze) in enumerate(
        [("adamw", "none"), ("adamw", "backbone"), ("sgd", "none"), ("sgd", "backbone")]
    ):
        hit = config_id == 0
        for evaluation in range(1, evaluations + 1):
            rows.append(
                {
                    "config_id": config_id,
                    "seed": 0,
                    "lr": 1e-4,
                    "batch_size": 16,
                    "optimizer": optimizer,
                    "freeze": freeze,
                    "weight_decay": 0.0,
                    "warmup_ratio": 0.0,
                    "evaluation": evaluation,
                    "val_accuracy": 0.9 if hit else 0.5,
                    "test_accuracy": 0.8 if hit else 0.5,
                    "seconds": (HIT_SECONDS if hit else MISS_SECONDS) / evaluations,
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_random_search_one_worker_expected_time_to_target(tmp_path: Path) -> None:
    path = write_table(tmp_path / "curves.parquet")
    # By hand: the target is the 95th percentile of the finals (0.5, 0.5, 0.5, 0.9), i.e. 0.84,
    # which only the hit reaches. One worker runs trials back to back; the misses before the
    # first hit are geometric with p = 1/4, mean (1 - p) / p = 3, so the expected time is
    # 3 * 10 s + 5 s = 35 s (standard deviation 10 * sqrt(12) = 34.6 s).
    expected, sd = 3 * MISS_SECONDS + HIT_SECONDS, MISS_SECONDS * 12**0.5
    random_search = next(m for m in METHODS if m.name == "random")
    # 100 repetitions: the bound below is then +-13.9 s around 35 s, which still tells the
    # right mean from one that drops the misses (5 s) or counts each miss twice (65 s).
    reps = 100
    times = [
        replay(ReplayTask(random_search, 1, rep, path, horizon=20.0)).time_to_target
        for rep in range(reps)
    ]
    assert np.isfinite(times).all()
    # horizon 20 = 700 s: P(70 misses in a row) = 0.75**70, about 2e-9.
    # Every time is some number of misses and then the hit: 5, 15, 25, ... seconds.
    assert {(t - HIT_SECONDS) % MISS_SECONDS for t in times} == {0.0}
    assert np.mean(times) == pytest.approx(expected, abs=4 * sd / reps**0.5)


def test_nearest_configuration_matches_categoricals_first(tmp_path: Path) -> None:
    table = Table.read(write_table(tmp_path / "curves.parquet"))
    assert table.nearest({"lr": 1e-6, "optimizer": "sgd", "freeze": "none"}) == 2


def test_time_to_target_percentiles_count_unreached_repetitions_as_never() -> None:
    # By hand: 10 repetitions, 2 never reached (+inf). The 10th percentile is the 1st smallest
    # (10 s), the 90th the 9th smallest, which is one of the unreached.
    times = np.array([50.0, 10.0, math.inf, 30.0, 20.0, 40.0, 60.0, math.inf, 70.0, 80.0])
    assert (percentile(times, 0.1), percentile(times, 0.8), percentile(times, 0.9)) == (
        10.0,
        80.0,
        math.inf,
    )


def test_end_only_run_pays_one_validation_pass() -> None:
    # By hand: 3 of 6 evaluations of 4 s each, 1 s of which is validation: 12 s of training and
    # validation, minus the 2 validation passes `eval_strategy="no"` skips = 10 s; scored by the
    # third evaluation.
    curve = Curve(
        val=np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        test=np.array([0.0, 0.0, 0.7, 0.0, 0.0, 0.0]),
        seconds=np.full(6, 4.0),
        config_id=7,
        val_seconds=np.full(6, 1.0),
    )
    run = end_only(curve, 3)
    assert (list(run.val), list(run.test), list(run.seconds), run.config_id) == (
        [0.3],
        [0.7],
        [10.0],
        7,
    )


# The "HF hps default" baseline is `Trainer.hyperparameter_search` as the pinned transformers
# runs it by default. Each test reads one default from transformers itself and asserts the
# replayed baseline behaves so (on the synthetic table: the budget never binds first).

HF = next(m for m in METHODS if m.name == "HF hps default")


def hf_replay(path: Path, workers: int) -> Any:
    return replay(ReplayTask(HF, workers, 0, path, horizon=40.0))


def test_hf_baseline_runs_transformers_default_trial_count(tmp_path: Path) -> None:
    from transformers import Trainer

    n_trials = inspect.signature(Trainer.hyperparameter_search).parameters["n_trials"].default
    assert hf_replay(write_table(tmp_path / "curves.parquet"), workers=1).trials == n_trials


def optuna_backend_optimize_kwargs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What transformers' Optuna backend passes to `Study.optimize` when the user passes no
    kwargs: its own `run_hp_search_optuna`, on a study that records the call."""
    import optuna
    from transformers.integrations.integration_utils import run_hp_search_optuna

    seen: dict[str, Any] = {}

    class RecordingStudy:
        best_trial = SimpleNamespace(number=0, value=0.0, params={})

        def optimize(self, objective: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

        def _is_multi_objective(self) -> bool:
            return False

    monkeypatch.setattr(optuna, "create_study", lambda **kwargs: RecordingStudy())
    trainer = SimpleNamespace(args=SimpleNamespace(process_index=0))
    run_hp_search_optuna(trainer, n_trials=20, direction="maximize")
    return seen


def test_hf_baseline_runs_as_many_trials_at_once_as_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_jobs = optuna_backend_optimize_kwargs(monkeypatch)["n_jobs"]
    # 4 workers free: the project's methods would run 4 trials at once; HF's backend runs
    # `n_jobs` (Optuna threads in one process).
    assert hf_replay(write_table(tmp_path / "curves.parquet"), workers=4).peak_running == n_jobs


def test_hf_baseline_scores_trials_when_transformers_evaluates(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    default = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}["eval_strategy"]
    # "no": no evaluation while training (nothing reported, nothing for a pruner), then
    # `run_hp_search_optuna`'s `trainer.evaluate()` scores the trial: one report per trial.
    assert default == "no"
    outcome = hf_replay(write_table(tmp_path / "curves.parquet", evaluations=6), workers=1)
    assert outcome.reports == outcome.trials
