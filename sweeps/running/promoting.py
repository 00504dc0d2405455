"""Promoting a sweep's best checkpoint: the results' best trial, its job, the copy, and the W&B
model artifact when the spec asks for one."""

from __future__ import annotations

from collections.abc import Callable

from sweeps.errors import PromotionError
from sweeps.results.queries import SweepResults
from sweeps.results.wandb_stream import log_model_artifact
from sweeps.spec import SweepSpec, apply_params
from sweeps.store.promotion import Promotion, promote


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
    best = SweepResults.of(spec).best(objective)
    if best is None:
        return None
    job = apply_params(spec.job, best.params, name=best.trial_id, source=f"trial {best.trial_id}")
    done = promote(
        best,
        job,
        dest,
        sweep=spec.name,
        objective=objective,
        spec_sha256=spec.sha256(),
        on_file_copied=on_file_copied,
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
