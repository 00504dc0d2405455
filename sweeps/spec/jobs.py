"""A trial's job: the sweep's typed base job with the trial's parameters applied.

`apply_params` is the one place a trial's dotted parameters become a job; `ResolvedJob` and
`PlannedSteps` are the picklable views of it that Tune callbacks keep in the sweep's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweeps.spec.dotted import SWEEP_SET_FIELDS, flatten, set_dotted
from trainables.config import FinetuneConfig, parse_config
from trainables.plan import plan_job


def apply_params(
    job: FinetuneConfig, params: dict[str, Any], name: str | None = None, source: str = "trial"
) -> FinetuneConfig:
    """`job` with a trial's dotted parameters set (and its name, when given), validated.

    Raises:
        ConfigError: naming the field a parameter value makes invalid, and `source`.
    """
    tree = job.model_dump(mode="json")
    for key, value in sorted(params.items()):
        tree = set_dotted(tree, key, value)
    if name is not None:
        tree["name"] = name
    return parse_config(tree, source=source)


@dataclass(frozen=True)
class ResolvedJob:
    """A trial's params -> its whole job, flat and dotted (what W&B records as its config)."""

    base: FinetuneConfig

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        job = apply_params(self.base, params).model_dump(mode="json")
        return flatten({k: v for k, v in job.items() if k not in SWEEP_SET_FIELDS})


@dataclass(frozen=True)
class PlannedSteps:
    """A trial's params -> the loop step its job ends at unless something stops it early."""

    base: FinetuneConfig
    train_rows: int

    def __call__(self, params: dict[str, Any]) -> int:
        return plan_job(apply_params(self.base, params), self.train_rows).total_steps
