"""Promoting a sweep's best checkpoint: the results' best trial, its job, the copy, and the W&B
model artifact when the spec asks for one."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any

from sweeps.errors import PromotionError
from sweeps.results.confirmation import confirmation_of, confirmed_best
from sweeps.results.queries import BestTrial
from sweeps.results.wandb_artifact import log_model_artifact
from sweeps.spec import SweepSpec, apply_params
from sweeps.store.model_versions import Promotion, evaluate_checkpoint, promote
from sweeps.store.storage import Location
from sweeps.store.trivial import read_trivial
from trainables.objective import Objective, is_finite_number


def promote_best(
    spec: SweepSpec,
    to: str | None = None,
    on_file_copied: Callable[[str], None] | None = None,
) -> Promotion | None:
    """Copies the sweep's best checkpoint to `to` (default: the spec's `promote.to`).

    Returns None when no trial has a finite target metric with a checkpoint.

    Raises:
        PromotionError: when there is no destination, or it cannot be written.
    """
    dest = to or (spec.promote.to if spec.promote else None)
    if not dest:
        raise PromotionError("promote.to: no destination; set it in the spec or pass --to")
    objective = spec.promotion_objective
    best = confirmed_best(spec, objective)
    if best is None:
        return None
    if best.confirmation is not None:
        best = _with_test_scores(spec, best, objective)
    job = apply_params(spec.job, best.params, name=best.trial_id, source=f"trial {best.trial_id}")
    done = promote(
        best,
        job,
        dest,
        sweep=spec.name,
        objective=objective,
        spec_sha256=spec.sha256(),
        on_file_copied=on_file_copied,
        # Computed before the sweep's first trial (`sweeps.running.runner`).
        trivial=read_trivial(Location.of(spec.storage_path).join(spec.name)),
    )
    if done.created and spec.promote and spec.promote.wandb_artifact:
        log_model_artifact(
            spec.wandb,
            sweep=spec.name,
            trial_id=best.trial_id,
            version=done.version,
            folder=done.location,
        )
    return done


def _with_test_scores(spec: SweepSpec, best: BestTrial, objective: Objective) -> BestTrial:
    """Adds each of the confirmation winner's seeds' validation and test scores (of the
    checkpoint that seed would promote), with their mean and sample standard deviation."""
    stage = confirmation_of(spec)
    winner = stage.winner if stage else None
    if stage is None or winner is None:
        return best
    test_metric = "test_" + objective.metric.removeprefix("val_")
    runs: list[dict[str, Any]] = []
    for run in winner.runs:
        row = stage.best_report(run, objective) if run.trial_id else None
        entry: dict[str, Any] = {"seed": run.seed, "trial_id": run.trial_id}
        if row is not None:
            params = stage.plan.point(winner.candidate, run.seed)
            job = apply_params(spec.job, params, name=run.trial_id, source=f"trial {run.trial_id}")
            entry["val"] = row.get(objective.metric)
            entry["test"] = evaluate_checkpoint(stage.checkpoint(row), job)
        runs.append(entry)
    scores = {
        "val": [r["val"] for r in runs if is_finite_number(r.get("val"))],
        "test": [
            r["test"][test_metric]
            for r in runs
            if r.get("test") and is_finite_number(r["test"].get(test_metric))
        ],
    }
    figures: dict[str, Any] = {"metric": objective.metric, "test_metric": test_metric}
    for split, values in scores.items():
        figures[f"{split}_mean"] = statistics.fmean(values) if values else None
        figures[f"{split}_std"] = statistics.stdev(values) if len(values) >= 2 else None
    confirmation = {**(best.confirmation or {}), "winner": {**figures, "runs": runs}}
    return dataclasses.replace(best, confirmation=confirmation)
