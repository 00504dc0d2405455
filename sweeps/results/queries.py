"""Queries over a sweep's results file: its trials, the trial table, and the best trial with the
checkpoint of its best report. What `sweeps status`, `best`, the report, promotion and a
finished `run_sweep` all read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweeps.results.lineage import schedule
from sweeps.results.results_file import (
    EXPLOITED_FROM,
    RESULTS_FILE,
    generation_of,
    params_of,
    read_results,
)
from sweeps.results.summaries import TrialSummary, summarize
from sweeps.results.tune_results import step_of
from sweeps.spec import SweepSpec
from sweeps.store import storage
from sweeps.store.storage import Location
from trainables.objective import Objective, is_finite_number
from trainables.reporting import REPORTED_METRICS


@dataclass(frozen=True)
class BestTrial:
    """The report of a trial chosen by a sweep's objective, with its checkpoint."""

    trial_id: str
    params: dict[str, Any]
    metrics: dict[str, float]
    checkpoint: Location
    #: Under PBT, the hyperparameters that trained this checkpoint, segment by segment
    #: (`{"from_step", "trial_id", "params"}`, oldest first); None for fixed configurations.
    schedule: list[dict[str, Any]] | None = None
    #: After a confirmation stage: its seeds, and each candidate's runs with their mean and
    #: standard deviation, the winner first (`sweeps.results.confirmation.summary`).
    confirmation: dict[str, Any] | None = None


def best_report(
    rows: list[dict[str, Any]],
    objective: Objective,
    checkpoint_exists: Callable[[str], bool],
) -> dict[str, Any] | None:
    """The report with the best finite target metric whose checkpoint still exists.

    NaN and inf never win. Ties go to the earlier trial id, then the earlier report, so the
    choice is deterministic.
    """
    best: dict[str, Any] | None = None
    # By the loop's step: a report recovered after its driver died has no Tune iteration.
    order = sorted(rows, key=lambda r: (r["trial_id"], generation_of(r), step_of(r)))
    for row in order:
        if not objective.better(
            row.get(objective.metric), best[objective.metric] if best else None
        ):
            continue
        # Checkpoint retention may have deleted this report's checkpoint: never pick it.
        ckpt = row.get("checkpoint_path")
        if isinstance(ckpt, str) and checkpoint_exists(ckpt):
            best = row
    return best


@dataclass(frozen=True)
class SweepResults:
    """The results of one sweep, read from `<storage_path>/<name>/results.parquet`.

    Args:
        folder: Where the sweep lives.
        objective: The sweep's target metric and direction (what "best" means by default).
    """

    folder: Location
    objective: Objective

    @classmethod
    def of(cls, spec: SweepSpec) -> SweepResults:
        """The results of the sweep `spec` describes."""
        return cls(Location.of(spec.storage_path).join(spec.name), spec.objective)

    @property
    def uri(self) -> str:
        """Where the results file lives."""
        return self.folder.join(RESULTS_FILE).uri

    def rows(self) -> list[dict[str, Any]]:
        """Every report of every trial, oldest first."""
        return read_results(self.uri)

    def trials(self) -> list[TrialSummary]:
        """One summary per trial, in first-report order."""
        return summarize(self.rows(), self.objective)

    def table(self) -> list[dict[str, Any]]:
        """One row per trial: id, status, stopped early, parameters, reports, best target."""
        return [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "stopped_early": t.stopped_early,
                "params": t.params,
                "reports": t.reports,
                "best": t.best,
            }
            for t in self.trials()
        ]

    def best(self, objective: Objective | None = None) -> BestTrial | None:
        """The best report by `objective` (default the sweep's) that still has its checkpoint.

        None when no trial reported a finite value of the metric with a checkpoint.
        """
        # Ray reports checkpoint paths on the sweep's filesystem, without scheme or options.
        at = self.folder.at
        rows = self.rows()
        row = best_report(rows, objective or self.objective, lambda p: storage.exists(at(p)))
        if row is None:
            return None
        metrics = {k: float(row[k]) for k in REPORTED_METRICS if is_finite_number(row.get(k))}
        pbt = any(r.get(EXPLOITED_FROM) for r in rows)
        return BestTrial(
            row["trial_id"],
            params_of(row),
            metrics,
            at(row["checkpoint_path"]),
            schedule=schedule(rows, row) if pbt else None,
        )
