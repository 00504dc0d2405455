"""`gp`: Bayesian optimisation with a Gaussian-process surrogate (Optuna's GPSampler)."""

import optuna

from sweeps.running.search.base import register
from sweeps.spec.space import Param


@register("gp")
def gp_sampler(space: dict[str, Param], seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=3)
