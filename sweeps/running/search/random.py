"""`random`: independent draws from each distribution."""

import optuna

from sweeps.running.search.base import register
from sweeps.spec.space import Param


@register("random")
def random_sampler(space: dict[str, Param], seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)
