"""`tpe`: Bayesian optimisation with Optuna's Tree-structured Parzen Estimator."""

import optuna

from sweeps.running.search.base import register
from sweeps.spec.space import Param


@register("tpe")
def tpe_sampler(space: dict[str, Param], seed: int) -> optuna.samplers.BaseSampler:
    # Few trials in a laptop sweep: start modelling after 3 random ones, not Optuna's 10.
    # `multivariate` models interactions (lr x batch size); `group` handles conditional params.
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=3,
        multivariate=True,
        group=True,
        constant_liar=True,  # concurrent trials do not all pile onto the same point
    )
