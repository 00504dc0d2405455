"""`pbt`: population-based training on Ray Tune's `PopulationBasedTraining`.

Every `perturbation_interval` evaluations a trial in the bottom `quantile` of the population
*exploits* one in the top quantile (continues from that trial's latest checkpoint: weights,
optimizer state, loop position) and *explores* its hyperparameters within the spec's space:
each parameter is drawn afresh with `resample_probability`, else moved to a neighbour (x0.8 or
x1.2 for ranges, clipped to the range; the next or previous value of a choice). Conditional
parameters follow their conditions: one that starts to hold is drawn afresh; one that does not
hold keeps the job's own value (Tune's PBT needs every trial to carry every key of the space).
"""

from __future__ import annotations

import random
from typing import Any

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from sweeps.running.schedulers.base import SchedulerContext, register
from sweeps.spec import Param, SchedulerSpec
from sweeps.spec.space import active


class Explorer:
    """PBT's explore step over a spec's space; a class so Tune can pickle it with the sweep.

    Args:
        space: The search space.
        fixed: The job's own values, dotted (conditions may name them).
        resample_probability: Chance of a fresh draw instead of a neighbour, per parameter.
        seed: Seeds the draws.
    """

    def __init__(
        self,
        space: dict[str, Param],
        fixed: dict[str, Any],
        resample_probability: float,
        seed: int,
    ) -> None:
        self.fixed = fixed
        # Unconditional parameters first: conditions are judged on the values explored so far.
        self.ordered = sorted(space.items(), key=lambda item: item[1].when is not None)
        self.resample_probability = resample_probability
        self.rng = random.Random(seed)

    def _resample(self) -> bool:
        return self.rng.random() < self.resample_probability

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        """The donor's config (the trial's parameters, dotted) explored into a new one."""
        out = dict(config)
        for key, param in self.ordered:
            if not active(param, self.fixed | out):
                out[key] = self.fixed.get(key)  # what the job has when the parameter is off
            elif not active(param, self.fixed | config) or self._resample():
                out[key] = param.sample(self.rng)
            else:
                out[key] = param.neighbour(out[key], self.rng)
        return out


@register("pbt")
def pbt(spec: SchedulerSpec, context: SchedulerContext) -> TrialScheduler:
    return PopulationBasedTraining(
        **context.on_evaluations(),
        perturbation_interval=spec.perturbation_interval,
        quantile_fraction=spec.quantile,
        # Everything is explored by the Explorer, within the spec's space and conditions.
        hyperparam_mutations={},
        custom_explore_fn=Explorer(
            context.space, context.fixed, spec.resample_probability, context.seed
        ),
        # The lineage lives in the sweep's results file, not in Tune's policy text files.
        log_config=False,
    )
