"""Contract: every search method x scheduler runs through the real Tuner on a cheap trainable."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sweeps.running.schedulers import schedulers
from sweeps.running.search import methods
from sweeps.running.tuner import build_tuner
from sweeps.spec import parse_spec
from tests.sweeps.cheap import ITERATIONS, cheap_trainable

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def sweep_spec(method: str, scheduler: str, space: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "name": f"{method}-{scheduler}",
            "job": {"data": {"builtin": "demo"}},
            "search": {
                "method": method,
                "metric": "val_accuracy",
                "mode": "max",
                "num_samples": 4,
                "seed": 3,
                "space": space,
            },
            "scheduler": {"name": scheduler, "grace_period": 1, "reduction_factor": 3},
        }
    )


SPACES = {
    "grid": {"optimizer.lr": {"choice": [1e-5, 1e-3]}, "training.seed": {"grid": [1, 2]}},
    "other": {
        "optimizer.lr": {"loguniform": [1e-5, 1e-2]},
        "optimizer.momentum": {"uniform": [0.1, 0.9], "when": {"optimizer.name": "sgd"}},
        "optimizer.name": {"choice": ["adamw", "sgd"]},
    },
}


def run(method: str, scheduler: str, tmp_path: Path) -> Any:
    spec = sweep_spec(method, scheduler, SPACES["grid" if method == "grid" else "other"])
    # A cheap function trainable (no Train inside) may reuse its actors: 76 trials in minutes.
    # One trial at a time (one trial process) but for the population schedulers, whose whole
    # population must be live to be compared.
    tuner = build_tuner(
        spec,
        cheap_trainable,
        max_t=ITERATIONS,
        max_concurrent=2 if scheduler in ("pbt", "pb2") else 1,
        storage=str(tmp_path),
        reuse_actors=True,
    )
    return tuner.fit()


# PBT and PB2 draw their population up front: only the methods that need no results can seed it.
COMBINATIONS = [
    (m, s)
    for m, s in itertools.product(methods(), schedulers())
    if s not in ("pbt", "pb2") or m in ("random", "grid")
    if s != "pb2" or m != "grid"  # PB2 explores ranges only; the grid space has none
]


@pytest.mark.timeout(600)
def test_every_method_and_scheduler_finishes_the_expected_trials(tmp_path: Path) -> None:
    assert ("random", "pb2") in COMBINATIONS and len(COMBINATIONS) == 4 * 4 + 2 + 1
    for method, scheduler in COMBINATIONS:
        grid = run(method, scheduler, tmp_path / f"{method}-{scheduler}")
        assert len(grid) == 4, (method, scheduler)
        assert not grid.errors, (method, scheduler, grid.errors)
        best = grid.get_best_result("val_accuracy", "max")
        assert best.metrics["val_accuracy"] > 0
        if method != "grid":
            for result in grid:
                cfg = result.config
                if scheduler in ("pbt", "pb2"):  # every trial carries every key; off: the job's
                    assert cfg["optimizer.name"] == "sgd" or cfg["optimizer.momentum"] == 0.9
                else:
                    assert ("optimizer.momentum" in cfg) == (cfg["optimizer.name"] == "sgd")


@pytest.mark.timeout(300)
def test_grid_enumerates_exactly_the_grid(tmp_path: Path) -> None:
    grid = run("grid", "fifo", tmp_path)
    points = sorted((r.config["optimizer.lr"], r.config["training.seed"]) for r in grid)
    assert points == sorted(itertools.product([1e-5, 1e-3], [1, 2]))


def evaluations_at_the_end(
    scheduler: str, num_samples: int, max_concurrent: int, tmp_path: Path
) -> list[int]:
    """Each trial's last evaluation, sorted, after a random search under `scheduler`."""
    spec = sweep_spec("random", scheduler, SPACES["other"])
    search = spec.search.model_copy(update={"num_samples": num_samples})
    grid = build_tuner(
        spec.model_copy(update={"search": search}),
        cheap_trainable,
        max_t=ITERATIONS,
        max_concurrent=max_concurrent,
        storage=str(tmp_path),
        reuse_actors=True,
    ).fit()
    return sorted(r.metrics["training_iteration"] for r in grid)


@pytest.mark.timeout(300)
def test_asha_stops_trials_at_rungs(tmp_path: Path) -> None:
    iterations = evaluations_at_the_end("asha", 8, 2, tmp_path)
    # Rungs at 1, 3, 9 evaluations (grace 1, eta 3): stopped trials end exactly on one.
    assert set(iterations) <= {1, 3, 9}
    assert iterations[0] < ITERATIONS and iterations[-1] == ITERATIONS


@pytest.mark.timeout(300)
def test_hyperband_stops_trials_with_one_trial_at_a_time(tmp_path: Path) -> None:
    # Synchronous Hyperband stopped nothing here: a bracket halves once all its trials are live,
    # and only one trial is. Brackets here (eta 3, 9 evaluations) first compare at 1, 3 and 9.
    np.random.seed(0)  # each trial's bracket is drawn from numpy's global generator
    iterations = evaluations_at_the_end("hyperband", 9, 1, tmp_path)
    assert set(iterations) <= {1, 3, 9}
    assert iterations[0] < ITERATIONS and iterations[-1] == ITERATIONS


@pytest.mark.timeout(300)
def test_seeded_sequential_runs_are_reproducible(tmp_path: Path) -> None:
    def configs(folder: str) -> list[float]:
        spec = sweep_spec("tpe", "fifo", SPACES["other"])
        grid = build_tuner(
            spec,
            cheap_trainable,
            max_t=ITERATIONS,
            max_concurrent=1,
            storage=str(tmp_path / folder),
            reuse_actors=True,
        ).fit()
        return sorted(r.config["optimizer.lr"] for r in grid)

    assert configs("a") == configs("b")


def test_the_spec_accepts_exactly_the_registered_methods_and_schedulers() -> None:
    from typing import get_args

    from sweeps.spec.spec import SchedulerName, SearchMethod

    assert sorted(get_args(SearchMethod)) == methods()
    assert sorted(get_args(SchedulerName)) == schedulers()
