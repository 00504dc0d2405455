"""PBT lineage from the results file: which trial copied which, at which step, with what change,
and the hyperparameter schedule behind any checkpoint.

A trial's rows form generations (column `generation`): each exploit starts one, its first row
naming the donor (`exploited_from`) and the donor's step it continued from (`exploit_step`).
Parameters change only at exploits, so a generation has one set of parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweeps.results.results_file import EXPLOIT_STEP, EXPLOITED_FROM, generation_of, params_of


@dataclass(frozen=True)
class Exploit:
    """One exploit: `trial_id` continued from `parent`'s checkpoint at `step`, with
    `changes` (parameter -> (the parent's value, the trial's new value))."""

    trial_id: str
    parent: str
    step: int
    changes: dict[str, tuple[Any, Any]]


def _at_step(rows: list[dict[str, Any]], trial_id: str, step: int, before: Any) -> dict | None:
    """The newest row of `trial_id` at `step` written no later than `before` (a timestamp)."""
    found = [
        r
        for r in rows
        if r["trial_id"] == trial_id
        and r.get("step") == step
        and (before is None or (r.get("timestamp") or 0) <= before)
    ]
    return max(found, key=lambda r: (r.get("timestamp") or 0, generation_of(r)), default=None)


def exploits(rows: list[dict[str, Any]]) -> list[Exploit]:
    """Every exploit in the results, oldest first."""
    found = []
    for row in sorted(rows, key=lambda r: r.get("timestamp") or 0):
        parent = row.get(EXPLOITED_FROM)
        if not parent:
            continue
        step = int(row[EXPLOIT_STEP])
        donor = _at_step(rows, parent, step, row.get("timestamp"))
        before, after = params_of(donor) if donor else {}, params_of(row)
        changes = {
            k: (before.get(k), after.get(k))
            for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)
        }
        found.append(Exploit(row["trial_id"], parent, step, changes))
    return found


def schedule(rows: list[dict[str, Any]], report: dict[str, Any]) -> list[dict[str, Any]]:
    """The hyperparameters that trained up to `report` (a row): one segment per generation
    along its lineage, oldest first, each `{"from_step", "trial_id", "params"}`."""
    segments: list[dict[str, Any]] = []
    current: dict[str, Any] | None = report
    while current is not None:
        trial_id, generation = current["trial_id"], generation_of(current)
        mine = [r for r in rows if r["trial_id"] == trial_id and generation_of(r) == generation]
        first = min(mine, key=lambda r: r.get("timestamp") or 0, default=current)
        parent = first.get(EXPLOITED_FROM)
        start = int(first[EXPLOIT_STEP]) if parent else 0
        segments.append({"from_step": start, "trial_id": trial_id, "params": params_of(current)})
        current = _at_step(rows, parent, start, first.get("timestamp")) if parent else None
    return segments[::-1]
