"""What `sweeps status` shows: the trial table (`SweepResults.table()`) as text for a person,
or as one JSON document for scripts."""

from __future__ import annotations

import math
from typing import Any

from sweeps.spec import SweepSpec
from trainables.objective import Objective


def status_table(table: list[dict[str, Any]], objective: Objective) -> str:
    """The trials as an aligned text table, one line per trial, in first-report order.

    Columns: trial, status, best target metric, reports, stopped early, parameters (last, as
    it is the widest). Numbers show 4 significant digits.

    Example:
        >>> rows = [{"trial_id": "a1", "status": "TERMINATED", "stopped_early": False,
        ...          "params": {"optimizer.lr": 0.000123456}, "reports": 3, "best": 0.9}]
        >>> print(status_table(rows, Objective("val_accuracy", "max")))
        trial  status      best val_accuracy  reports  stopped early  parameters
        a1     TERMINATED  0.9                3        no             optimizer.lr=0.0001235
    """
    header = ["trial", "status", f"best {objective.metric}", "reports", "stopped early"]
    lines = [
        (
            [
                str(row["trial_id"]),
                str(row["status"]),
                _number(row["best"]),
                str(row["reports"]),
                "yes" if row["stopped_early"] else "no",
            ],
            ", ".join(f"{k}={_number(v)}" for k, v in sorted(row["params"].items())),
        )
        for row in table
    ]
    rows = [(header, "parameters"), *lines]
    # The parameters go last, unpadded: they are the widest column.
    widths = [max(len(cells[i]) for cells, _ in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + "  " + params
        for cells, params in rows
    )


def status_document(spec: SweepSpec, results_uri: str, table: list[dict[str, Any]]) -> dict:
    """The trials as one JSON-ready document (non-finite numbers as null).

    Keys: `sweep`, `results` (the results file), `metric`, `mode`, `planned_trials`, and
    `trials`: per trial `trial_id`, `status`, `stopped_early`, `params`, `reports`, `best`.
    """
    return {
        "sweep": spec.name,
        "results": results_uri,
        "metric": spec.search.metric,
        "mode": spec.search.mode,
        "planned_trials": spec.trials,
        "trials": [{k: _finite(v) for k, v in row.items()} for row in table],
    }


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
