"""The confirmation stage's decisions, on hand-made results: which configurations it retrains
with which seeds, and that the winner is the best mean over seeds, not the best single seed."""

from __future__ import annotations

from typing import Any

import pytest

from sweeps.errors import SpecError
from sweeps.results.confirmation import (
    Candidate,
    ConfirmPlan,
    decide,
    plan_confirmation,
)
from sweeps.results.summaries import TrialSummary
from sweeps.spec import parse_spec
from trainables.objective import Objective

MAX = Objective("val_accuracy", "max")


def trial(trial_id: str, best: float | None, **params: Any) -> TrialSummary:
    return TrialSummary(trial_id, "TERMINATED", False, params, 3, best, {})


def plan_of(*lrs: float, seeds: tuple[int, ...] = (1000, 1001, 1002)) -> ConfirmPlan:
    keys = ["optimizer.lr"]
    return ConfirmPlan(
        [Candidate(f"search{i}", {"optimizer.lr": lr}, 0.9) for i, lr in enumerate(lrs)],
        list(seeds),
        keys,
        {"optimizer.lr": 1e-4},
    )


def runs(lr: float, values: list[float | None]) -> list[TrialSummary]:
    return [
        trial(f"lr{lr}-s{seed}", value, **{"optimizer.lr": lr, "training.seed": seed})
        for seed, value in zip((1000, 1001, 1002), values, strict=True)
    ]


def test_the_winner_is_the_best_mean_not_the_best_single_seed() -> None:
    # lr 1e-3 has the best single run (0.95) but mean 0.79; lr 3e-4 has mean 0.85.
    trials = runs(1e-3, [0.95, 0.70, 0.72]) + runs(3e-4, [0.85, 0.84, 0.86])
    ranked = decide(plan_of(1e-3, 3e-4), trials, MAX)
    assert ranked[0].candidate.params == {"optimizer.lr": 3e-4}
    assert ranked[0].mean == pytest.approx(0.85)


def test_promotion_takes_the_winners_best_seed() -> None:
    trials = runs(1e-3, [0.95, 0.70, 0.72]) + runs(3e-4, [0.85, 0.84, 0.86])
    winner = decide(plan_of(1e-3, 3e-4), trials, MAX)[0]
    best = winner.best_run(MAX)
    assert best is not None and (best.seed, best.trial_id) == (1002, "lr0.0003-s1002")


def test_the_standard_deviation_is_over_the_seeds() -> None:
    winner = decide(plan_of(3e-4), runs(3e-4, [0.85, 0.84, 0.86]), MAX)[0]
    # Sample standard deviation of 0.85, 0.84, 0.86: sqrt((0 + 1e-4 + 1e-4) / 2) = 0.01.
    assert winner.std == pytest.approx(0.01)


def test_with_mode_min_the_lowest_mean_wins() -> None:
    loss = Objective("val_loss", "min")
    trials = runs(1e-3, [0.10, 0.90, 0.80]) + runs(3e-4, [0.30, 0.30, 0.30])
    ranked = decide(plan_of(1e-3, 3e-4), trials, loss)
    assert ranked[0].candidate.params == {"optimizer.lr": 3e-4}


def test_a_run_that_reported_nothing_is_missing_not_zero() -> None:
    trials = runs(1e-3, [0.90, None, 0.80])
    winner = decide(plan_of(1e-3), trials, MAX)[0]
    assert winner.mean == pytest.approx(0.85)


def test_the_plan_takes_the_top_distinct_configurations() -> None:
    search = [
        trial("a", 0.70, **{"optimizer.lr": 1e-5}),
        trial("b", 0.90, **{"optimizer.lr": 3e-4}),
        trial("c", 0.91, **{"optimizer.lr": 3e-4}),  # the same configuration again
        trial("d", None, **{"optimizer.lr": 1e-2}),  # no finite value: never a candidate
        trial("e", 0.80, **{"optimizer.lr": 1e-4}),
    ]
    plan = plan_confirmation(search, MAX, top_k=2, seeds=2, fixed={"training.seed": 42})
    assert [(c.search_trial, c.params) for c in plan.candidates] == [
        ("c", {"optimizer.lr": 3e-4}),
        ("e", {"optimizer.lr": 1e-4}),
    ]


def test_the_seeds_are_new() -> None:
    # The job trains with seed 1000 and one trial searched seed 1001: neither is reused.
    search = [
        trial("a", 0.7, **{"optimizer.lr": 1e-5}),
        trial("b", 0.9, **{"optimizer.lr": 3e-4, "training.seed": 1001}),
    ]
    plan = plan_confirmation(search, MAX, top_k=2, seeds=3, fixed={"training.seed": 1000})
    assert plan.seeds == [1002, 1003, 1004]


def test_each_point_retrains_a_candidate_with_one_seed() -> None:
    plan = plan_of(3e-4, seeds=(1000, 1001))
    assert plan.points() == [
        {"optimizer.lr": 3e-4, "training.seed": 1000},
        {"optimizer.lr": 3e-4, "training.seed": 1001},
    ]


def confirming_spec(scheduler: str) -> dict[str, Any]:
    return {
        "name": "x",
        "job": {"model": {"name_or_path": "m"}, "data": {"builtin": "demo"}},
        "search": {
            "method": "random",
            "num_samples": 4,
            "space": {"optimizer.lr": {"loguniform": [1e-5, 1e-3]}},
            "confirm": {"top_k": 2, "seeds": 2},
        },
        "scheduler": {"name": scheduler},
    }


def test_confirm_is_refused_with_pbt() -> None:
    with pytest.raises(SpecError, match="search.confirm"):
        parse_spec(confirming_spec("pbt"))


def test_confirm_with_asha_is_accepted() -> None:
    # Positive control for the refusal above: the same spec under ASHA validates.
    assert parse_spec(confirming_spec("asha")).search.confirm is not None
