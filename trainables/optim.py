"""Optimizer, learning-rate schedule and the improvement tracker behind early stopping."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from trainables.config import OptimizerConfig, ScheduleConfig


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


@dataclass
class ImprovementTracker:
    """Tracks the best value of a monitored metric and evaluations since it improved.

    Early stopping ends training after `patience` evaluations without improvement; the
    plateau schedule cuts the LR each time that count reaches its own patience.
    """

    mode: str  # "min" or "max"
    best: float | None = None
    evals_since_best: int = 0
    lr_scale: float = 1.0

    def update(self, value: float) -> bool:
        """Records one evaluation; returns whether it improved on the best so far."""
        improved = math.isfinite(value) and (
            self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        )
        if improved:
            self.best, self.evals_since_best = value, 0
        else:
            self.evals_since_best += 1
        return improved

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
