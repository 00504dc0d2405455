"""`pb2`: population-based bandits (Parker-Holder et al. 2020) on Ray Tune's `PB2`.

PBT's exploit (the bottom `quantile` continue from a top trial's latest checkpoint), with the
explore step replaced: the copy's new values of the space's unconditional ranges (`uniform`,
`loguniform`) are chosen by a time-varying Gaussian-process bandit (GP-UCB) fitted to the
population's recent improvements, within each range's bounds; choices and conditional
parameters are inherited from the donor. Ray's PB2 works on the bounds as given (linear), so a
`loguniform` range is explored on a linear scale. It needs scikit-learn (a dependency here).
"""

from __future__ import annotations

from ray.tune.schedulers import TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import SchedulerSpec


@register("pb2")
def pb2(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    bounds = {
        key: list(getattr(param, param.kind))
        for key, param in context.space.items()
        if param.kind in ("uniform", "loguniform") and param.when is None
    }
    # Imported here: Ray's PB2 module imports scikit-learn (~1.2 s), which only a PB2 sweep's
    # driver needs, not every process that imports the schedulers.
    from ray.tune.schedulers.pb2 import PB2

    return PB2(
        **context.on_evaluations(),
        perturbation_interval=spec.perturbation_interval,
        quantile_fraction=spec.quantile,
        hyperparam_bounds=bounds,
        # The lineage lives in the sweep's results file, not in Tune's policy text files.
        log_config=False,
    )
