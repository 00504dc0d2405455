"""The results file keeps every report of a trial Tune retried, keyed by the loop's step, and
says "stopped early" only when Tune stopped the trial before its plan's last step.

The callback is driven the way Tune's controller drives it (`on_trial_result` with the result
dict, `done` set on the one a scheduler decided STOP on, then `on_trial_complete`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import sweeps.results.results_log as results_module
from sweeps.results.results_file import read_results
from sweeps.results.results_log import ResultsLog

LAST_STEP = 60


class EndsAt60:
    def __call__(self, params: dict[str, Any]) -> int:
        return LAST_STEP


def trial() -> SimpleNamespace:
    return SimpleNamespace(trial_id="t1", config={"optimizer.lr": 1e-4}, last_result={})


def report(log: ResultsLog, t: SimpleNamespace, iteration: int, step: int, **more: Any) -> None:
    result = {"training_iteration": iteration, "step": step, "val_loss": 1.0 / step, **more}
    result |= {"timestamp": step, "config": dict(t.config), "done": more.get("done", False)}
    log.on_trial_result(0, [t], t, result)
    t.last_result = result


def test_a_retried_trial_keeps_the_reports_before_its_retry(tmp_path: Path) -> None:
    log, t = ResultsLog(str(tmp_path / "results.parquet"), EndsAt60()), trial()
    report(log, t, 1, 20)
    report(log, t, 2, 40)
    # The worker dies; Tune retries the trial from its step-40 checkpoint: iterations restart.
    report(log, t, 1, 40, val_accuracy=0.5)  # the replayed step: the newest row wins
    report(log, t, 2, 60)
    log.on_trial_complete(0, [t], t)
    rows = read_results(str(tmp_path / "results.parquet"))
    assert [r["step"] for r in rows] == [20, 40, 60]
    assert rows[1]["val_accuracy"] == 0.5


def test_a_retried_trial_that_ran_its_plan_is_not_stopped_early(tmp_path: Path) -> None:
    # Fewer reports (iterations) than a whole run makes, but it reached its last step by itself.
    log, t = ResultsLog(str(tmp_path / "results.parquet"), EndsAt60()), trial()
    report(log, t, 1, 20)
    report(log, t, 1, 40)
    report(log, t, 2, 60)
    log.on_trial_complete(0, [t], t)
    assert {r["stopped_early"] for r in read_results(str(tmp_path / "results.parquet"))} == {False}


def test_a_trial_the_scheduler_stopped_before_its_last_step_is_stopped_early(
    tmp_path: Path,
) -> None:
    log, t = ResultsLog(str(tmp_path / "results.parquet"), EndsAt60()), trial()
    report(log, t, 1, 20)
    report(log, t, 2, 40, done=True)
    log.on_trial_complete(0, [t], t)
    assert {r["stopped_early"] for r in read_results(str(tmp_path / "results.parquet"))} == {True}


def test_a_scheduler_stop_at_the_last_step_is_not_early(tmp_path: Path) -> None:
    # ASHA decides STOP on the report that reaches max_t: the trial had nothing left to run.
    log, t = ResultsLog(str(tmp_path / "results.parquet"), EndsAt60()), trial()
    report(log, t, 1, 20)
    report(log, t, 2, 40)
    report(log, t, 3, 60, done=True)
    log.on_trial_complete(0, [t], t)
    assert {r["stopped_early"] for r in read_results(str(tmp_path / "results.parquet"))} == {False}


def test_a_report_is_read_back_as_soon_as_it_is_journaled_before_any_rewrite(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path / "results.parquet")
    log, t = ResultsLog(uri, EndsAt60(), every_s=1e9), trial()  # no rewrite before the end
    report(log, t, 1, 20)
    report(log, t, 2, 40)

    assert not (tmp_path / "results.parquet").exists()  # the file has not been written ...
    rows = read_results(uri)  # ... and a reader sees both reports, the trial still running
    assert [(r["step"], r["trial_status"]) for r in rows] == [(20, "RUNNING"), (40, "RUNNING")]


def test_a_trial_end_is_read_back_from_the_journal(tmp_path: Path) -> None:
    uri = str(tmp_path / "results.parquet")
    log, t = ResultsLog(uri, EndsAt60(), every_s=1e9), trial()
    report(log, t, 1, 20)
    report(log, t, 2, 40, done=True)
    log.on_trial_complete(0, [t], t)

    assert {(r["trial_status"], r["stopped_early"]) for r in read_results(uri)} == {
        ("TERMINATED", True)
    }


def test_rewrites_of_the_file_cost_a_bounded_number_of_rows_per_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 trials of 3 reports each, rewriting whenever allowed (every_s=0): the rows written
    in all stay within a constant times the journal's entries, 900 reports and 300 trial ends
    (a rewrite at each trial's end would write 3 * (1 + ... + 300) = 135,450)."""
    written: list[int] = []
    real = results_module.write_results

    def counting(uri: str, rows: list[dict[str, Any]]) -> None:
        written.append(len(rows))
        real(uri, rows)

    monkeypatch.setattr(results_module, "write_results", counting)
    uri = str(tmp_path / "results.parquet")
    log = ResultsLog(uri, EndsAt60(), every_s=0.0)
    for i in range(300):
        t = SimpleNamespace(trial_id=f"t{i:03d}", config={"optimizer.lr": 1e-4}, last_result={})
        for iteration, step in enumerate((20, 40, 60), start=1):
            report(log, t, iteration, step)
        log.on_trial_complete(0, [t], t)
    log.on_experiment_end([])

    assert len(read_results(uri)) == 900
    assert written[-1] == 900
    assert sum(written) <= 12 * (900 + 300), (len(written), sum(written))
