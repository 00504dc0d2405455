"""The Tune callback that writes a sweep's results file (`sweeps.results.results_file`).

Bookkeeping per report does not grow with the sweep: each report (and each trial's end) is
appended to the journal as a small file of its own, and the file is rewritten (atomically) only
when the journal holds a tenth as many rows as the file (and at most every few seconds), and at
the experiment's end, so a sweep of N reports rewrites O(N) rows in all, not O(N^2).

Nothing a trial reported is lost when the driver dies (SIGKILL, a lost head node):

- every report is also written, as it arrives, to a small file of its own in `results.journal/`
  beside the results file (constant cost per report); a rewrite of the results file takes the
  journal's rows in and removes their files; a resumed sweep reads both;
- a report the dead driver never received (Train had committed its checkpoint, the result was
  on its way) is recovered when the trial starts again, from the checkpoint metrics its Train
  run keeps (Ray Train's own record in `train/<trial id>/`, read by `trainables.ray_compat`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ray.tune import Callback

from sweeps.errors import StorageError
from sweeps.results.results_file import (
    END_SUFFIX,
    EXPLOITED_FROM,
    GENERATION,
    PARAM_PREFIX,
    Key,
    Status,
    fold,
    journal_of,
    read_parts,
    report_name,
    with_status,
    write_results,
)
from sweeps.results.tune_results import TUNE_KEYS, Planned, params_at, step_of, stopped_by_tune
from sweeps.store import storage
from sweeps.store.storage import Location
from trainables.ray_compat import checkpoint_time, snapshot_reports, train_snapshot_name

logger = logging.getLogger(__name__)


class ResultsLog(Callback):
    """A Tune callback that keeps `uri` (a Parquet file) and its journal equal to every report
    so far (see the module's docstring for when the file itself is rewritten).

    Args:
        uri: Where the file lives (a local path or a pyarrow filesystem URI).
        planned: A trial's config -> the step its job ends at unless stopped early (picklable).
        every_s: Rewrites the file at most this often before the experiment's end.
        train_runs: Where the trials' Train runs live, to recover committed reports from.
    """

    def __init__(
        self,
        uri: str,
        planned: Planned | None = None,
        every_s: float = 5.0,
        train_runs: str | None = None,
    ) -> None:
        self.uri, self.planned, self.every_s, self.train_runs = uri, planned, every_s, train_runs
        self._journal = journal_of(uri)
        self._journaled: set[str] = set()
        self._rows: dict[Key, dict[str, Any]] = {}
        self._generation: dict[str, int] = {}
        self._status: Status = {}
        self._stopped: dict[str, bool] = {}
        self._last_write = 0.0
        self._in_file = 0  # rows the file held at its last rewrite
        self._loaded = False

    def __getstate__(self) -> dict[str, Any]:
        # Tune saves callbacks with the sweep's state; the rows live in the file, so only the
        # constructor's arguments are kept.
        return {name: getattr(self, name) for name in ("uri", "planned", "every_s", "train_runs")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        # A resumed sweep keeps the rows of its earlier runs, and what their journal holds.
        table, entries = read_parts(self.uri)
        rows = [] if table is None else table.to_pylist()
        self._rows, self._status = fold(rows, entries)
        self._in_file = len(rows)
        self._journaled = {name for name, _ in entries}
        for trial_id, generation, _ in self._rows:
            self._generation[trial_id] = max(generation, self._generation.get(trial_id, 0))
        self._stopped = {trial_id: early for trial_id, (_, early) in self._status.items()}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._load()
        self._status[trial.trial_id] = ("RUNNING", False)
        self._recover_from_train(trial)

    def _recover_from_train(self, trial: Any) -> None:
        """Adds the reports a trial's Train run committed that no driver received."""
        if self.train_runs is None or self._generation.get(trial.trial_id, 0):
            return  # an exploited (PBT) trial's Train runs are named by their checkpoint
        run = Location.of(self.train_runs).join(trial.trial_id)
        snapshot = run.join(train_snapshot_name())
        if not storage.exists(snapshot):
            return
        for metrics, name in snapshot_reports(storage.read_text(snapshot)):
            key = (trial.trial_id, 0, step_of(metrics))
            if "step" not in metrics or key in self._rows:
                continue
            row = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
            row |= {PARAM_PREFIX + k: v for k, v in dict(trial.config).items()}
            row |= {
                "trial_id": trial.trial_id,
                GENERATION: 0,
                "checkpoint_path": run.join(name).path,
                "timestamp": checkpoint_time(name),
            }
            self._rows[key] = row
            self._write_journal(report_name(row, 0), row)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._load()
        row = {k: v for k, v in result.items() if k not in TUNE_KEYS and not isinstance(v, dict)}
        row |= {PARAM_PREFIX + k: v for k, v in params_at(result, trial).items()}
        row["trial_id"] = trial.trial_id
        # Each exploit (PBT) starts a new generation of the trial: its iterations continue the
        # donor's, which may repeat ones the trial had itself.
        generation = self._generation.get(trial.trial_id, 0) + bool(result.get(EXPLOITED_FROM))
        self._generation[trial.trial_id] = row[GENERATION] = generation
        # A trial retried from its checkpoint reports the steps after it again: the newest wins.
        self._rows[(trial.trial_id, generation, step_of(result))] = row
        self._write_journal(report_name(row, generation), row)
        if result.get("done"):
            self._stopped[trial.trial_id] = stopped_by_tune(
                result, params_at(result, trial), self.planned
            )
        self._flush_if_due()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._load()
        self._end(trial.trial_id, "TERMINATED", self._stopped.get(trial.trial_id, False))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._load()
        self._end(trial.trial_id, "ERROR", False)

    def _end(self, trial_id: str, status: str, early: bool) -> None:
        self._status[trial_id] = (status, early)
        entry = {"trial_id": trial_id, "trial_status": status, "stopped_early": early}
        self._write_journal(f"{trial_id}{END_SUFFIX}", entry)
        self._flush_if_due()

    def _flush_if_due(self) -> None:
        # A rewrite costs the whole file: it waits for a tenth as many new entries as the file
        # holds, so its cost per report stays flat however long the sweep.
        if time.monotonic() - self._last_write >= self.every_s and len(self._journaled) >= max(
            1, self._in_file // 10
        ):
            self.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Tune also ends the experiment (its clean-up) when an error stops it: that error, not a
        # failed last rewrite (the same full disk, say), is the one to reach the user.
        stopping_on_error = sys.exc_info()[1] is not None
        self._load()
        for trial in trials:
            if trial.status not in ("TERMINATED", "ERROR"):
                self._status[trial.trial_id] = (trial.status, False)
        try:
            self.flush(final=True)
        except StorageError as exc:
            if not stopping_on_error:
                raise
            logger.error("%s", exc)

    def last_steps(self) -> dict[str, int]:
        """Each trial's last step among the rows kept so far (earlier drivers' included)."""
        self._load()
        last: dict[str, int] = {}
        for trial_id, _, step in self._rows:
            last[trial_id] = max(last.get(trial_id, -1), step)
        return last

    def _write_journal(self, name: str, entry: dict[str, Any]) -> None:
        """A report or a trial's end on its own, before anything else happens: a driver killed
        next keeps it."""
        try:
            storage.write_text(self._journal.join(name), json.dumps(entry, default=str))
        except OSError as exc:  # the storage is down: the next rewrite still holds it
            logger.warning("results journal not written (%s): %s", exc, name)
            return
        self._journaled.add(name)

    def flush(self, final: bool = False) -> None:
        """Rewrites the file with every row so far, then drops the journal files it holds.

        Args:
            final: The experiment's last rewrite: a failure raises `StorageError`; any other
                only warns (the next one retries).
        """
        rows = with_status(self._rows, self._status)
        try:
            write_results(self.uri, rows)
            self._in_file = len(rows)
        except OSError as exc:
            # The rows stay in memory and in the journal, the previous file as it was: a storage
            # down for a while (or full until a trial's checkpoint fails on it) is retried at
            # the next rewrite; only the last one must succeed.
            if final:
                raise StorageError(f"storage_path: cannot write {self.uri}: {exc}") from exc
            logger.warning("results file not rewritten, kept for the next rewrite: %s", exc)
            self._last_write = time.monotonic()
            return
        try:
            for name in sorted(self._journaled):
                storage.delete(self._journal.join(name))
        except OSError as exc:  # left for the next rewrite; a resumed sweep dedupes them
            logger.warning("results journal not cleared (%s)", exc)
        else:
            self._journaled.clear()
        self._last_write = time.monotonic()
