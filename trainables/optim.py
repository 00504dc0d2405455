"""Optimizer, learning-rate schedule and the improvement tracker behind early stopping."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from trainables.config import OptimizerConfig, ScheduleConfig
from trainables.objective import Mode, Objective


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: decayed, and biases/normalisation weights (not)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (no_decay if is_norm or name.endswith("bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the model's trainable parameters.

    Uses the fused kernel where the parameters' device has one: on CPU the fused AdamW step
    is ~4x faster than the foreach one (11 vs 50 ms for MiniLM), about 18% of a short step.
    """
    groups = [g for g in param_groups(model, cfg.weight_decay) if g["params"]]
    kwargs: dict = {"lr": cfg.lr}
    optimizer_cls: type[torch.optim.Optimizer]
    if cfg.name == "sgd":
        optimizer_cls, kwargs["momentum"] = torch.optim.SGD, cfg.momentum
    else:
        # Adam's weight_decay is L2 in the gradient, which is what users asking for Adam expect.
        optimizer_cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        kwargs |= {"betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    try:
        return optimizer_cls(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return optimizer_cls(groups, **kwargs)


def warmup_steps(cfg: ScheduleConfig, total_steps: int) -> int:
    """Warmup length in optimizer steps: explicit steps win over the ratio."""
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total_steps)
    return math.ceil(cfg.warmup_ratio * total_steps)


def lr_multiplier(step: int, total_steps: int, warmup: int, schedule: str) -> float:
    """The factor on the base LR for optimizer step `step` (0-based) of `total_steps`."""
    if step < warmup and schedule != "constant":
        return (step + 1) / (warmup + 1)
    if schedule in ("constant", "constant_with_warmup", "reduce_on_plateau"):
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))  # cosine


def lr_schedule(
    base_lr: float, cfg: ScheduleConfig, total_steps: int
) -> Callable[[int, float], float]:
    """The learning rate of each optimizer step, as a function `lr_at(step, scale)`.

    `step` is 0-based; `scale` is the plateau tracker's cut (1.0 when nothing was cut).

    Example:
        >>> lr_at = lr_schedule(0.1, ScheduleConfig(name="linear", warmup_steps=1), 3)
        >>> [lr_at(0, 1.0), lr_at(1, 1.0), lr_at(2, 0.5)]
        [0.05, 0.1, 0.025]
    """
    warmup = warmup_steps(cfg, total_steps)

    def lr_at(step: int, scale: float) -> float:
        # This order of the products is what runs always used: a resumed run's LR is bit-identical.
        return base_lr * scale * lr_multiplier(step, total_steps, warmup, cfg.name)

    return lr_at


@dataclass
class ImprovementTracker:
    """Tracks the best value of a monitored metric and evaluations since it improved.

    Early stopping ends training after `patience` evaluations without improvement; the
    plateau schedule cuts the LR each time that count reaches its own patience. Its fields are
    its `state_dict()`, which checkpoints carry.

    Example:
        >>> tracker = ImprovementTracker.watching("val_loss")
        >>> tracker.update(0.5), tracker.update(0.6), tracker.evals_since_best
        (True, False, 1)
    """

    mode: Mode
    best: float | None = None
    evals_since_best: int = 0
    lr_scale: float = 1.0

    @classmethod
    def watching(cls, monitor: str) -> ImprovementTracker:
        """A fresh tracker of `monitor` in its natural direction (see `Objective.of`)."""
        return cls(mode=Objective.of(monitor).mode)

    def update(self, value: float) -> bool:
        """Records one evaluation; returns whether it improved on the best so far."""
        improved = Objective("monitored", self.mode).better(value, than=self.best)
        if improved:
            self.best, self.evals_since_best = value, 0
        else:
            self.evals_since_best += 1
        return improved

    def state_dict(self) -> dict:
        """The tracker's fields, for a checkpoint."""
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Takes back what `state_dict()` returned."""
        for key, value in state.items():
            setattr(self, key, value)
