"""W&B sweep files translate key by key into the spec, and bad ones name the W&B key."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import optuna
import pytest
import yaml

from sweeps.errors import SpecError
from sweeps.running.search import define_by_run
from sweeps.spec import load_spec, parse_spec
from sweeps.spec.wandb_format import from_wandb

WANDB_FILE = """
program: train.py
method: bayes
name: my sweep
project: sentiment
metric: {name: eval_accuracy, goal: maximize}
run_cap: 12
parameters:
  learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}
  batch_size: {values: [16, 32]}
  epochs: {value: 2}
  warmup_ratio: {min: 0.0, max: 0.2}
  seed: {min: 1, max: 4}
  model:
    parameters:
      hidden_dropout: {distribution: normal, mu: 0.1, sigma: 0.02}
  data.builtin: {value: demo}
early_terminate: {type: hyperband, min_iter: 2, eta: 3}
"""


def test_a_wandb_file_runs_as_the_equivalent_spec(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(WANDB_FILE)
    spec = load_spec(path, ["search.seed=7"])

    assert spec.name == "my-sweep"
    assert (spec.search.method, spec.search.metric, spec.search.mode) == (
        "gp",
        "val_accuracy",
        "max",
    )
    assert spec.trials == 12 and spec.search.seed == 7
    assert spec.job.training.epochs == 2 and spec.job.data.builtin == "demo"
    space = spec.search.space
    assert space["optimizer.lr"].loguniform == (1e-5, 1e-3)
    assert space["training.batch_size"].choice == (16, 32)
    assert space["schedule.warmup_ratio"].uniform == (0.0, 0.2)
    assert space["training.seed"].randint == (1, 4)
    assert space["model.hidden_dropout"].normal == (0.1, 0.02)
    sched = spec.scheduler
    assert (sched.name, sched.grace_period, sched.reduction_factor) == ("asha", 2, 3)


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ({"value": 3}, {"value": 3}),
        ({"values": [1, 2]}, {"choice": [1, 2]}),
        ({"min": 1, "max": 5}, {"randint": [1, 5]}),
        ({"min": 0.1, "max": 0.5}, {"uniform": [0.1, 0.5]}),
        ({"distribution": "q_uniform", "min": 0, "max": 8, "q": 2}, {"uniform": [0, 8], "q": 2}),
        (
            {"distribution": "log_uniform", "min": -3, "max": 0},
            {"loguniform": [math.exp(-3), 1.0]},
        ),
        (
            {"distribution": "inv_log_uniform", "min": 1, "max": 3},
            {"loguniform": [math.exp(-3), math.exp(-1)]},
        ),
        (
            {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 1},
            {"loguniform": [0.1, 1]},
        ),
        (
            {"distribution": "q_log_uniform_values", "min": 1, "max": 64},
            {"loguniform": [1, 64], "q": 1},
        ),
        ({"mu": 0.1, "sigma": 0.01}, {"normal": [0.1, 0.01]}),
        ({"distribution": "q_normal", "mu": 10}, {"normal": [10, 1.0], "q": 1}),
        ({"distribution": "log_normal", "mu": -2, "sigma": 0.5}, {"lognormal": [-2, 0.5]}),
    ],
)
def test_each_distribution_maps(param: dict, expected: dict) -> None:
    raw = {"method": "random", "parameters": {"optimizer.momentum": param}}
    out = from_wandb(raw, "x")
    got = out["search"]["space"].get("optimizer.momentum") or {
        "value": out["job"]["optimizer"]["momentum"]
    }
    assert got == expected


def test_normal_parameters_are_drawn_from_their_normal() -> None:
    spec = parse_spec(
        {
            "method": "random",
            "parameters": {
                "data.builtin": {"value": "demo"},
                "schedule.warmup_ratio": {"mu": 0.3, "sigma": 0.05},
                "optimizer.lr": {"distribution": "log_normal", "mu": -9.0, "sigma": 0.5},
            },
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = define_by_run(spec.search.space, {})
    draws = [space(study.ask()) for _ in range(3000)]
    warmup = [d["schedule.warmup_ratio"] for d in draws]
    log_lr = [math.log(d["optimizer.lr"]) for d in draws]
    assert statistics.mean(warmup) == pytest.approx(0.3, abs=0.005)
    assert statistics.stdev(warmup) == pytest.approx(0.05, rel=0.05)
    assert statistics.mean(log_lr) == pytest.approx(-9.0, abs=0.05)
    assert statistics.stdev(log_lr) == pytest.approx(0.5, rel=0.05)


def test_hyperband_with_max_iter_and_brackets() -> None:
    raw = {
        "method": "random",
        "parameters": {"data.builtin": {"value": "demo"}},
        "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3},
    }
    expected = {"name": "asha", "grace_period": 3, "reduction_factor": 3, "max_t": 27}
    dumped = parse_spec(raw).scheduler.model_dump()
    assert {key: dumped[key] for key in expected} == expected


INVALID = [
    ("unknown top key", {"method": "random", "parameters": {}, "agent": 1}, "agent: not a W&B"),
    ("unknown method", {"method": "bohb", "parameters": {"lr": {"value": 1}}}, "method: 'bohb'"),
    (
        "unknown parameter",
        {"method": "random", "parameters": {"learnin_rate": {"min": 0.1, "max": 1.0}}},
        "parameters.learnin_rate: 'learnin_rate' is neither a job field nor a known alias; "
        "did you mean learning_rate",
    ),
    (
        "unknown distribution",
        {"method": "random", "parameters": {"lr": {"distribution": "beta", "min": 0, "max": 1}}},
        "parameters.lr.distribution: 'beta'",
    ),
    (
        "weighted categories",
        {"method": "random", "parameters": {"lr": {"values": [1], "probabilities": [1]}}},
        "parameters.lr.probabilities",
    ),
    (
        "nested unknown",
        {"method": "random", "parameters": {"model": {"parameters": {"dropot": {"value": 0.1}}}}},
        "parameters.model.parameters.dropot",
    ),
    (
        "bad goal",
        {
            "method": "random",
            "parameters": {"lr": {"value": 1e-4}},
            "metric": {"name": "x", "goal": "up"},
        },
        "metric.goal",
    ),
    (
        "early terminate type",
        {
            "method": "random",
            "parameters": {"lr": {"value": 1e-4}},
            "early_terminate": {"type": "x"},
        },
        "early_terminate.type",
    ),
]


@pytest.mark.parametrize(("case", "raw", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_bad_wandb_files_name_the_wandb_key(case: str, raw: dict, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert message in str(err.value)


def test_shipped_wandb_example_is_a_plain_wandb_file() -> None:
    raw = yaml.safe_load(Path("sweeps/examples/wandb_bayes.yaml").read_text())
    assert set(raw) <= {"program", "method", "metric", "parameters", "early_terminate", "run_cap"}
