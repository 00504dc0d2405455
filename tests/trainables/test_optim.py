import math

import numpy as np
import pytest
import torch

from trainables.config import OptimizerConfig, ScheduleConfig
from trainables.metrics import macro_f1, summarize
from trainables.optim import (
    ImprovementTracker,
    build_optimizer,
    lr_multiplier,
    lr_schedule,
    param_groups,
    warmup_steps,
)


def test_weight_decay_skips_biases_and_layernorm_and_frozen() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [(4, 4)]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_every_optimizer_builds(name: str) -> None:
    opt = build_optimizer(torch.nn.Linear(3, 1), OptimizerConfig(name=name, lr=0.1))
    assert opt.param_groups[0]["lr"] == 0.1


def test_warmup_prefers_steps_over_ratio() -> None:
    assert warmup_steps(ScheduleConfig(warmup_ratio=0.1), 100) == 10
    assert warmup_steps(ScheduleConfig(warmup_ratio=0.1, warmup_steps=3), 100) == 3


def test_schedules_warm_up_then_follow_their_shape() -> None:
    total, warm = 100, 10
    assert lr_multiplier(0, total, warm, "linear") < lr_multiplier(9, total, warm, "linear") < 1
    assert lr_multiplier(10, total, warm, "linear") == 1.0
    assert lr_multiplier(99, total, warm, "linear") < 0.02
    assert math.isclose(lr_multiplier(55, total, warm, "cosine"), 0.5)
    assert lr_multiplier(99, total, warm, "constant_with_warmup") == 1.0
    assert lr_multiplier(0, total, warm, "constant") == 1.0  # constant means no warmup at all
    assert lr_multiplier(0, total, warm, "reduce_on_plateau") < 1.0


# schedule, warmup steps, step, scale, LR by hand for base 0.2 over 5 steps
LRS = {
    "warmup-first-step": ("linear", 2, 0, 1.0, 0.2 * 1 / 3),
    "warmup-last-step": ("linear", 2, 1, 1.0, 0.2 * 2 / 3),
    "linear-peak": ("linear", 2, 2, 1.0, 0.2),
    "linear-decay": ("linear", 2, 4, 1.0, 0.2 * (1 - 2 / 3)),
    "cosine-midway": ("cosine", 1, 3, 1.0, 0.2 * 0.5),
    "plateau-cut": ("reduce_on_plateau", 0, 4, 0.25, 0.05),
    "plateau-cut-in-warmup": ("reduce_on_plateau", 3, 0, 0.5, 0.2 * 0.5 / 4),
    "constant-ignores-warmup": ("constant", 3, 0, 1.0, 0.2),
}


@pytest.mark.parametrize("case", LRS.values(), ids=LRS.keys())
def test_lr_schedule_gives_each_steps_lr(case: tuple) -> None:
    name, warmup, step, scale, expected = case
    lr_at = lr_schedule(0.2, ScheduleConfig(name=name, warmup_steps=warmup), total_steps=5)
    assert math.isclose(lr_at(step, scale), expected, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("val_loss", "min"), ("val_accuracy", "max"), ("val_f1_macro", "max")],
)
def test_tracker_watches_a_metric_in_its_natural_direction(monitor: str, mode: str) -> None:
    assert ImprovementTracker.watching(monitor).mode == mode


def test_min_tracker_improves_on_lower_values_only() -> None:
    tracker = ImprovementTracker(mode="min")
    assert tracker.update(0.5)
    assert not tracker.update(0.5)  # a tie is no improvement
    assert not tracker.update(0.7) and tracker.evals_since_best == 2
    assert tracker.update(0.2) and tracker.best == 0.2 and tracker.evals_since_best == 0


def test_tracker_state_keeps_the_keys_checkpoints_have() -> None:
    state = ImprovementTracker(mode="max", best=0.9, evals_since_best=2, lr_scale=0.5).state_dict()
    assert state == {"mode": "max", "best": 0.9, "evals_since_best": 2, "lr_scale": 0.5}


def test_tracker_counts_evaluations_since_best_and_ignores_nan() -> None:
    tracker = ImprovementTracker(mode="max")
    assert tracker.update(0.5) and tracker.evals_since_best == 0
    assert not tracker.update(float("nan"))
    assert not tracker.update(0.4) and tracker.evals_since_best == 2
    assert tracker.update(0.6) and tracker.best == 0.6
    restored = ImprovementTracker(mode="min")
    restored.load_state_dict(tracker.state_dict())
    assert restored == tracker


def test_macro_f1_matches_per_class_definition() -> None:
    confusion = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    f1s = []
    for c in range(3):
        tp = confusion[c, c]
        precision = tp / confusion[:, c].sum()
        recall = tp / confusion[c].sum()
        f1s.append(2 * precision * recall / (precision + recall))
    assert math.isclose(macro_f1(confusion), float(np.mean(f1s)))
    metrics = summarize(8.0, 16, confusion, "val_")
    assert metrics == {
        "val_loss": 0.5,
        "val_accuracy": 12 / 16,
        "val_f1_macro": macro_f1(confusion),
    }
