"""PBT's explore step and lineage bookkeeping, without Ray: values stay in the spec's space,
conditions are followed, and the lineage read back from rows is the one written."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from sweeps.errors import SpecError
from sweeps.results.lineage import exploits, schedule
from sweeps.running.schedulers import SchedulerContext, make_scheduler
from sweeps.running.schedulers.pbt import Explorer
from sweeps.spec import Param, parse_spec

SPACE = {
    "optimizer.lr": Param.model_validate({"loguniform": [1e-5, 1e-3]}),
    "optimizer.weight_decay": Param.model_validate({"uniform": [0.0, 0.1]}),
    "training.batch_size": Param.model_validate({"randint": [8, 64], "q": 8}),
    "training.label_smoothing": Param.model_validate({"normal": [0.1, 0.02]}),
    "optimizer.name": Param.model_validate({"choice": ["adamw", "sgd"]}),
    "optimizer.momentum": Param.model_validate(
        {"uniform": [0.8, 0.99], "when": {"optimizer.name": "sgd"}}
    ),
}
FIXED = {"optimizer.momentum": 0.9, "optimizer.name": "adamw"}
START = {
    "optimizer.lr": 1e-3,  # the top of its range: x1.2 must be clipped
    "optimizer.weight_decay": 0.0,  # the bottom of its range
    "training.batch_size": 64,
    "training.label_smoothing": 0.1,
    "optimizer.name": "adamw",
    "optimizer.momentum": 0.9,
}


def explored(resample: float, seed: int, rounds: int = 200) -> list[dict[str, Any]]:
    explore = Explorer(SPACE, FIXED, resample, seed)
    config, out = dict(START), []
    for _ in range(rounds):
        config = explore(config)
        out.append(config)
    return out


@pytest.mark.parametrize("resample", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("key", sorted(k for k, p in SPACE.items() if not p.is_discrete))
def test_explored_ranges_stay_inside_the_space(resample: float, key: str) -> None:
    param = SPACE[key]
    low, high = (
        (0.1 - 3.72 * 0.02, 0.1 + 3.72 * 0.02)  # the normal's truncation, by hand
        if param.kind == "normal"
        else tuple(getattr(param, param.kind))
    )
    values = [c[key] for c in explored(resample, seed=1) if key in c]
    assert values and all(low - 1e-12 <= v <= high + 1e-12 for v in values)
    if key == "training.batch_size":
        assert all(isinstance(v, int) and v % 8 == 0 for v in values)


def test_perturbing_moves_ranges_by_a_fifth_and_clips_at_the_bounds() -> None:
    config = explored(resample=0.0, seed=3, rounds=1)[0]
    assert config["optimizer.lr"] in (pytest.approx(8e-4), pytest.approx(1e-3))
    assert config["optimizer.weight_decay"] == 0.0  # 0 * 0.8 or 0 * 1.2
    assert config["training.label_smoothing"] in (pytest.approx(0.08), pytest.approx(0.12))


def test_a_perturbed_choice_moves_to_a_neighbour() -> None:
    names = [c["optimizer.name"] for c in explored(resample=0.0, seed=5, rounds=50)]
    assert set(names) == {"adamw", "sgd"}  # the only neighbour of each is the other


def test_a_condition_that_stops_holding_gives_the_job_its_own_value() -> None:
    for config in explored(resample=0.25, seed=7):
        if config["optimizer.name"] == "adamw":
            assert config["optimizer.momentum"] == FIXED["optimizer.momentum"]
        else:
            assert 0.8 <= config["optimizer.momentum"] <= 0.99


def test_a_condition_that_starts_to_hold_draws_the_parameter_afresh() -> None:
    # Control first: with sgd kept, momentum is perturbed from 0.9 (to 0.72 or 1.08, clipped).
    sgd = START | {"optimizer.name": "sgd"}
    only = {"optimizer.momentum": SPACE["optimizer.momentum"]}
    kept = Explorer(only, {"optimizer.name": "sgd"}, 0.0, seed=0)(sgd)
    assert kept["optimizer.momentum"] in (0.8, 0.99)
    # Turned on by the explore step itself: a fresh draw, not the job's 0.9 perturbed.
    switch = {"optimizer.name": SPACE["optimizer.name"]} | only
    draws = {
        round(Explorer(switch, FIXED, 0.0, seed=s)(START)["optimizer.momentum"], 6)
        for s in range(40)
    }
    assert len(draws - {0.8, 0.99, 0.9}) > 10


def test_the_same_seed_explores_the_same_way() -> None:
    assert explored(0.25, seed=11) == explored(0.25, seed=11) != explored(0.25, seed=12)


def test_resampling_draws_log_ranges_evenly_in_log_space() -> None:
    lrs = [c["optimizer.lr"] for c in explored(resample=1.0, seed=2, rounds=2000)]
    below = sum(lr < math.sqrt(1e-5 * 1e-3) for lr in lrs) / len(lrs)
    assert 0.45 < below < 0.55  # half the draws below the geometric middle


def test_param_samples_follow_randint_steps() -> None:
    rng = random.Random(0)
    values = {SPACE["training.batch_size"].sample(rng) for _ in range(500)}
    assert values == {8, 16, 24, 32, 40, 48, 56, 64}


def pbt_spec(method: str, num_samples: int = 4) -> dict[str, Any]:
    return {
        "name": "p",
        "job": {"data": {"builtin": "demo"}},
        "search": {
            "method": method,
            "num_samples": num_samples,
            "space": {"optimizer.lr": {"loguniform": [1e-5, 1e-3]}},
        },
        "scheduler": {"name": "pbt", "perturbation_interval": 2},
    }


@pytest.mark.parametrize("method", ["tpe", "gp"])
def test_pbt_refuses_a_method_that_needs_results_to_draw(method: str) -> None:
    with pytest.raises(SpecError, match="search.method: .* cannot seed PBT"):
        parse_spec(pbt_spec(method))


def test_pbt_refuses_a_population_of_one() -> None:
    with pytest.raises(SpecError, match="population of at least 2"):
        parse_spec(pbt_spec("random", num_samples=1))


def test_pbt_with_random_search_validates() -> None:
    spec = parse_spec(pbt_spec("random"))
    assert spec.scheduler.perturbation_interval == 2 and spec.scheduler.quantile == 0.25


def row(trial: str, step: int, lr: float, t: int, generation: int = 0, **more: Any) -> dict:
    return {
        "trial_id": trial,
        "step": step,
        "timestamp": t,
        "generation": generation,
        "param.optimizer.lr": lr,
        **more,
    }


# b copies a at step 20 (lr 0.1 -> 0.12), then c copies b at step 40 (lr 0.12 -> 0.096).
ROWS = [
    row("a", 10, 0.1, 1),
    row("b", 10, 0.5, 1),
    row("a", 20, 0.1, 2),
    row("b", 20, 0.5, 2),
    row("b", 30, 0.12, 3, 1, exploited_from="a", exploit_step=20),
    row("c", 10, 0.9, 3),
    row("b", 40, 0.12, 4, 1),
    row("c", 50, 0.096, 5, 1, exploited_from="b", exploit_step=40),
]


def test_exploits_name_the_donor_the_step_and_the_change() -> None:
    found = exploits(ROWS)
    assert [(e.trial_id, e.parent, e.step) for e in found] == [("b", "a", 20), ("c", "b", 40)]
    assert found[0].changes == {"optimizer.lr": (0.1, 0.12)}
    assert found[1].changes == {"optimizer.lr": (0.12, 0.096)}


def test_the_schedule_of_a_checkpoint_walks_its_lineage_back() -> None:
    assert schedule(ROWS, ROWS[-1]) == [
        {"from_step": 0, "trial_id": "a", "params": {"optimizer.lr": 0.1}},
        {"from_step": 20, "trial_id": "b", "params": {"optimizer.lr": 0.12}},
        {"from_step": 40, "trial_id": "c", "params": {"optimizer.lr": 0.096}},
    ]


def test_a_trial_that_never_exploited_has_one_segment() -> None:
    assert schedule(ROWS, ROWS[2]) == [
        {"from_step": 0, "trial_id": "a", "params": {"optimizer.lr": 0.1}}
    ]


def pb2_spec(space: dict[str, Any]) -> dict[str, Any]:
    raw = pbt_spec("random")
    raw["search"]["space"] = space
    raw["scheduler"] = {"name": "pb2", "perturbation_interval": 2}
    return raw


def test_pb2_refuses_a_space_without_a_range() -> None:
    with pytest.raises(SpecError, match="search.space: PB2 explores only ranges"):
        parse_spec(pb2_spec({"model.freeze": {"choice": ["none", "embeddings"]}}))


def test_pb2_explores_the_unconditional_ranges_within_their_bounds() -> None:
    # Positive control for the refusal above; the choice is inherited from the donor.
    space = {
        "optimizer.lr": {"loguniform": [1e-5, 1e-3]},
        "optimizer.weight_decay": {"uniform": [0.0, 0.1]},
        "model.freeze": {"choice": ["none", "embeddings"]},
    }
    spec = parse_spec(pb2_spec(space))
    context = SchedulerContext(spec.objective, 6, spec.search.space, {}, 0)
    scheduler = make_scheduler(spec.scheduler, context)
    assert scheduler._hyperparam_bounds == {
        "optimizer.lr": [1e-5, 1e-3],
        "optimizer.weight_decay": [0.0, 0.1],
    }
