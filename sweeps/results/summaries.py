"""Trials as the results file tells them: one summary each, and when a sweep is finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweeps.results.results_file import params_of
from trainables.objective import Objective


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the results file tells it."""

    trial_id: str
    status: str
    stopped_early: bool
    params: dict[str, Any]
    reports: int
    best: float | None
    last: dict[str, Any]

    @property
    def ended(self) -> bool:
        """Whether the trial completed or errored: it will not report again."""
        return self.status in ("TERMINATED", "ERROR")

    @property
    def score(self) -> float:
        """`best`, for trials known to have one."""
        if self.best is None:
            raise ValueError(f"trial {self.trial_id} reported no finite target metric")
        return self.best


def finished(trials: list[TrialSummary], planned: int) -> bool:
    """Whether a sweep is finished: every trial it has ended, and it has the `planned` ones."""
    return sum(t.ended for t in trials) == len(trials) >= planned


def summarize(rows: list[dict[str, Any]], objective: Objective) -> list[TrialSummary]:
    """One `TrialSummary` per trial, in first-report order."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    out = []
    for trial_id, history in by_trial.items():
        last = history[-1]
        out.append(
            TrialSummary(
                trial_id=trial_id,
                status=str(last.get("trial_status")),
                stopped_early=bool(last.get("stopped_early")),
                params=params_of(last),
                reports=len(history),
                best=objective.best(r.get(objective.metric) for r in history),
                last=last,
            )
        )
    return out
