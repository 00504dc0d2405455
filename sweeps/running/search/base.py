"""The search-method seam: a name -> factory registry of Optuna samplers.

Every method drives the same define-by-run space (`define_by_run`), so conditional parameters
work the same under all of them; Ray Tune runs it through `OptunaSearch`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from sweeps.running.registry import Registry
from sweeps.spec.space import Param, active

SamplerFactory = Callable[[dict[str, Param], int], optuna.samplers.BaseSampler]
_REGISTRY: Registry[SamplerFactory] = Registry("search method")
#: Registers a sampler factory `(space, seed) -> sampler` under a method name (a decorator).
register = _REGISTRY.register


def make_sampler(method: str, space: dict[str, Param], seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of a registered search method."""
    return _REGISTRY[method](space, seed)


def methods() -> list[str]:
    """The registered search method names."""
    return _REGISTRY.names()


class DefineByRun:
    """The space as an Optuna define-by-run function over dotted keys.

    Conditional parameters come last and are drawn only when their `when` holds, judged on the
    values drawn so far and on the job's `fixed` (dotted) values. A class, not a closure: Tune
    pickles the searcher, this function included, into the sweep's state to resume it.
    """

    def __init__(self, space: dict[str, Param], fixed: dict[str, Any]) -> None:
        self.ordered = sorted(space.items(), key=lambda item: item[1].when is not None)
        self.fixed = fixed

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        chosen = dict(self.fixed)
        drawn = {}
        for key, param in self.ordered:
            if active(param, chosen):
                chosen[key] = drawn[key] = param.suggest(trial, key)
        # Returned values replace what Optuna recorded: quantized and normal parameters are
        # recorded in the sampler's own (unquantized, CDF) terms.
        return drawn


define_by_run = DefineByRun


def draw_population(
    method: str, space: dict[str, Param], fixed: dict[str, Any], seed: int, size: int
) -> list[dict[str, Any]]:
    """`size` configurations drawn up front by a method that needs no results (random, grid):
    the starting population of population-based training."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(method, space, seed))
    draw = DefineByRun(space, fixed)
    population: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        population.append(draw(trial))
        return 0.0

    # `optimize`, not ask/tell: the grid sampler stops the study once the grid is used up.
    study.optimize(objective, n_trials=size)
    return population
