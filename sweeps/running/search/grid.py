"""`grid`: every combination of the listed values, each exactly once."""

import optuna

from sweeps.running.search.base import register
from sweeps.spec.space import Param


@register("grid")
def grid_sampler(space: dict[str, Param], seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler(
        {key: list(param.values()) for key, param in space.items()}, seed=seed
    )
