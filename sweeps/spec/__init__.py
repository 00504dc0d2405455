"""Stage 1, the spec: one YAML file, typed and validated, and what a trial's parameters make of
its job. Nothing here runs anything."""

from sweeps.spec.dotted import apply_overrides, field_paths, flatten, set_dotted
from sweeps.spec.jobs import PlannedSteps, ResolvedJob, apply_params
from sweeps.spec.space import Param
from sweeps.spec.spec import (
    ConfirmSpec,
    PromoteSpec,
    SchedulerSpec,
    SearchSpec,
    SweepSpec,
    WandbSpec,
    load_spec,
    load_spec_with_origins,
    parse_spec,
)

__all__ = [
    "ConfirmSpec",
    "Param",
    "PlannedSteps",
    "PromoteSpec",
    "ResolvedJob",
    "SchedulerSpec",
    "SearchSpec",
    "SweepSpec",
    "WandbSpec",
    "apply_overrides",
    "apply_params",
    "field_paths",
    "flatten",
    "load_spec",
    "load_spec_with_origins",
    "parse_spec",
    "set_dotted",
]
