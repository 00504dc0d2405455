"""The confirmation stage as a Tune experiment: after the search, its top configurations
retrained with new seeds, beside the sweep as `<name>.confirm/`.

The stage is a sweep of its own (so it resumes like one): the search's spec with a FIFO
scheduler (no early stopping), no time budget (every run trains its full job), no promotion,
and exactly the plan's points as its trials.
"""

from __future__ import annotations

from typing import Any

from sweeps.results.confirmation import (
    PLAN_FILE,
    ConfirmPlan,
    confirm_name,
    confirmation_results,
    plan_confirmation,
    read_plan,
)
from sweeps.results.queries import SweepResults
from sweeps.spec import SchedulerSpec, SearchSpec, SweepSpec, flatten
from sweeps.store import storage


def confirmation_stage(
    spec: SweepSpec, restart: bool
) -> tuple[SweepSpec, list[dict[str, Any]]] | None:
    """The stage's spec and trial configs, planned from the finished search (and saved, so a
    resumed stage retrains the same candidates with the same seeds); None when the search has
    no trial with a finite target metric to confirm."""
    confirm = spec.search.confirm
    if confirm is None:
        raise ValueError(f"sweep {spec.name!r} has no search.confirm")
    folder = confirmation_results(spec).folder
    plan = None if restart else read_plan(folder)
    if plan is None:
        plan = plan_confirmation(
            SweepResults.of(spec).trials(),
            spec.objective,
            confirm.top_k,
            confirm.seeds,
            flatten(spec.job.model_dump(mode="json")),
        )
        if restart:
            storage.delete(folder)
        storage.write_text(folder.join(PLAN_FILE), plan.to_json())
    if not plan.candidates:
        return None
    return stage_spec(spec, plan), plan.points()


def stage_spec(spec: SweepSpec, plan: ConfirmPlan) -> SweepSpec:
    """The confirmation experiment's spec: the search's job and objective, every point run to
    its end."""
    search = spec.search
    return spec.model_copy(
        update={
            "name": confirm_name(spec.name),
            "search": SearchSpec(
                method="random",
                metric=search.metric,
                mode=search.mode,
                num_samples=len(plan.candidates) * len(plan.seeds),
                max_concurrent_trials=search.max_concurrent_trials,
                seed=search.seed,
            ),
            "scheduler": SchedulerSpec(name="fifo"),
            "promote": None,
        }
    )
