"""Every trial's history in one Parquet file per sweep: the single source for `status`, `best`
and the report.

One row per report: `trial_id`, `trial_status` (as of the last write), `stopped_early`,
`training_iteration`, `timestamp`, every reported metric, `checkpoint_path`, the parameters the
report was made with as `param.<dotted key>` columns, and under PBT the lineage
(`exploited_from`, `exploit_step`, `generation`).

Bookkeeping per report does not grow with the sweep: each report (and each trial's end) is
appended to the journal below as a small file of its own, and the file is rewritten
(atomically) only when the journal holds a tenth as many rows as the file (and at most every few
seconds), and at the experiment's end, so a sweep of N reports rewrites O(N) rows in all, not
O(N^2). Readers (`read_results`, `read_table`) merge the journal in: they see every report as
soon as it is journaled.

Nothing a trial reported is lost when the driver dies (SIGKILL, a lost head node):

- every report is also written, as it arrives, to a small file of its own in `results.journal/`
  beside the results file (constant cost per report); a rewrite of the results file takes the
  journal's rows in and removes their files; a resumed sweep reads both;
- a report the dead driver never received (Train had committed its checkpoint, the result was
  on its way) is recovered when the trial starts again, from the checkpoint metrics its Train
  run keeps (Ray Train's own record in `train/<trial id>/`, read by `trainables.ray_compat`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import Callback

from sweeps.errors import StorageError
from sweeps.store import storage
from sweeps.store.storage import Location
from trainables.objective import Objective
from trainables.ray_compat import checkpoint_time, snapshot_reports, train_snapshot_name

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.parquet"
JOURNAL = "results.journal"
# A journal file that records a trial's end (its status), not a report.
_END = ".end.json"
PARAM_PREFIX = "param."
#: Lineage columns (PBT): the first report after an exploit names the trial it copied and that
#: trial's step; `generation` counts a trial's exploits so far.
EXPLOITED_FROM, EXPLOIT_STEP, GENERATION = "exploited_from", "exploit_step", "generation"
# Tune's bookkeeping in every result that is not a metric of the trial.
TUNE_KEYS = frozenset(
    {"config", "trial_id", "experiment_tag", "date", "hostname", "node_ip", "pid", "done"}
    | {"time_since_restore", "iterations_since_restore", "timesteps_since_restore"}
    | {"timesteps_total", "episodes_total", "experiment_id", "should_checkpoint"}
    | {"checkpoint_dir_name", "time_this_iter_s", "time_total_s"}
)


def params_at(result: dict[str, Any], trial: Any) -> dict[str, Any]:
    """The parameters a result was produced with: Tune's copy in the result, since a scheduler
    (PBT) may have changed the trial's config by the time callbacks see the result."""
    return dict(result.get("config") or trial.config)


#: A trial's params -> the loop step its job ends at unless something stops it early.
#: Picklable: Tune saves the callbacks holding one with the sweep's state.
Planned = Callable[[dict[str, Any]], int]


def step_of(result: dict[str, Any]) -> int:
    """The loop's step of a report (Tune's `training_iteration` for trainables without one).

    The step, not the iteration, identifies a report: a trial Tune retries from its checkpoint
    counts iterations from 1 again while its steps go on where the checkpoint left them.
    """
    step = result.get("step")
    return int(result.get("training_iteration", 0) if step is None else step)


def stopped_by_tune(
    result: dict[str, Any], params: dict[str, Any], planned: Planned | None
) -> bool:
    """Whether Tune stopped the trial at `result` before its plan's last step.

    Tune marks the result a scheduler (or stopper) decided STOP on with `done` before callbacks
    see it; a trial that ends by itself makes no further report (Tune hands only the scheduler a
    copy of its last one). A STOP at the plan's last step (ASHA stops what reaches `max_t`) is
    not early, nor is a trial that ended on its own early-stopping patience.
    """
    return bool(result.get("done")) and (planned is None or step_of(result) < planned(params))


def read_results(uri: str) -> list[dict[str, Any]]:
    """Every report of a sweep, oldest first: its results file with the journal's newer rows
    and trial ends merged in; [] when there is none yet."""
    table, entries = _read_parts(uri)
    rows = [] if table is None else table.to_pylist()
    return _merge(rows, entries) if entries else rows


def read_table(uri: str) -> pa.Table | None:
    """`read_results` as an Arrow table; None when there is nothing yet."""
    table, entries = _read_parts(uri)
    if not entries:
        return table
    return _to_table(_merge([] if table is None else table.to_pylist(), entries))


def _read_parts(uri: str) -> tuple[pa.Table | None, list[tuple[str, dict[str, Any]]]]:
    """The results file (None if not there yet) and the journal's (name, entry) pairs."""
    journal = _journal_of(uri)
    # The journal's names first, then the file: a rewrite in between has put those rows in the
    # file (their journal files then read as missing), and none is lost either way.
    names = storage.files(journal) if storage.exists(journal) else []
    return _read_file(uri), _read_journal(journal, names)


def _read_file(uri: str) -> pa.Table | None:
    loc = Location.of(uri)
    if not storage.exists(loc):
        return None
    fs, path = loc.filesystem()
    with fs.open_input_file(path) as handle:
        return pq.read_table(handle)


def _journal_of(uri: str) -> Location:
    results = Location.of(uri)
    return results.at(posixpath.dirname(results.path)).join(JOURNAL)


def _read_journal(journal: Location, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, entry) of each journal file still there (a rewrite removes the ones it took)."""
    entries = []
    for name in names:
        try:
            entries.append((name, json.loads(storage.read_text(journal.join(name)))))
        except FileNotFoundError:
            continue
    return entries


def generation_of(row: dict[str, Any]) -> int:
    """A report's generation: how many times its trial started again from another trial's
    checkpoint (PBT); 0 in any other sweep (the column is absent or null)."""
    return int(row.get(GENERATION) or 0)


def _key(row: dict[str, Any]) -> tuple[str, int, int]:
    return (row["trial_id"], generation_of(row), step_of(row))


def _merge(
    rows: list[dict[str, Any]], entries: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The file's rows with the journal's reports (the newer copy of a step wins) and trial
    ends applied, oldest first."""
    by_key = {_key(row): row for row in rows}
    status = {row["trial_id"]: (row["trial_status"], row["stopped_early"]) for row in rows}
    for name, entry in entries:
        if name.endswith(_END):
            status[entry["trial_id"]] = (entry["trial_status"], entry["stopped_early"])
        else:
            by_key[_key(entry)] = entry
    return _with_status(by_key, status)


def _with_status(
    by_key: dict[tuple[str, int, int], dict[str, Any]], status: dict[str, tuple[str, bool]]
) -> list[dict[str, Any]]:
    """Rows oldest first, each with its trial's status and whether it was stopped early."""
    out = []
    for (trial_id, *_), row in sorted(by_key.items(), key=lambda kv: (_timestamp(kv[1]), kv[0])):
        trial_status, early = status.get(trial_id, ("RUNNING", False))
        out.append(row | {"trial_status": trial_status, "stopped_early": early})
    return out


def write_results(uri: str, rows: list[dict[str, Any]]) -> None:
    """Writes rows atomically: a reader sees the old file or the new one, never a part."""
    table = _to_table(rows)
    fs, path = Location.of(uri).filesystem()
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    temporary = f"{path}.tmp-{time.time_ns()}"
    try:
        with fs.open_output_stream(temporary) as handle:
            pq.write_table(table, handle)
        fs.move(temporary, path)
    except OSError:
        # A full disk leaves the old file as it was and no part-written one beside it.
        with contextlib.suppress(OSError):
            fs.delete_file(temporary)
        raise


def _to_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {}
    for key in sorted({k for row in rows for k in row}):
        values = [row.get(key) for row in rows]
        present = [v for v in values if v is not None]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        if key.startswith(PARAM_PREFIX) and not numeric:
            values = [
                None if v is None else json.dumps(v) if not isinstance(v, str) else v
                for v in values
            ]
        columns[key] = values
    return pa.table(columns) if rows else pa.table({"trial_id": pa.array([], pa.string())})


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


def params_of(row: dict[str, Any]) -> dict[str, Any]:
    """The trial parameters a results row carries."""
    return {
        k.removeprefix(PARAM_PREFIX): v
        for k, v in row.items()
        if k.startswith(PARAM_PREFIX) and v is not None
    }


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
        self._journal = _journal_of(uri)
        self._journaled: set[str] = set()
        self._rows: dict[tuple[str, int, int], dict[str, Any]] = {}
        self._generation: dict[str, int] = {}
        self._status: dict[str, tuple[str, bool]] = {}
        self._stopped: dict[str, bool] = {}
        self._last_write = 0.0
        self._in_file = 0  # rows the file held at its last rewrite
        self._loaded = False

    def __getstate__(self) -> dict[str, Any]:
        # Tune saves callbacks with the sweep's state; the rows live in the file.
        return {
            "uri": self.uri,
            "planned": self.planned,
            "every_s": self.every_s,
            "train_runs": self.train_runs,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        # A resumed sweep keeps the rows of its earlier runs, and what their journal holds.
        table, entries = _read_parts(self.uri)
        for row in [] if table is None else table.to_pylist():
            self._rows[_key(row)] = row
            self._generation[row["trial_id"]] = generation_of(row)
            self._status[row["trial_id"]] = (row["trial_status"], bool(row["stopped_early"]))
            self._stopped[row["trial_id"]] = bool(row["stopped_early"])
        self._in_file = len(self._rows)
        for name, entry in entries:
            self._journaled.add(name)
            trial_id = entry["trial_id"]
            if name.endswith(_END):
                self._status[trial_id] = (entry["trial_status"], bool(entry["stopped_early"]))
                self._stopped[trial_id] = bool(entry["stopped_early"])
                continue
            key = _key(entry)
            self._rows[key] = entry
            self._generation[trial_id] = max(key[1], self._generation.get(trial_id, 0))

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
            self._write_journal(_report_name(row, 0), row)

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
        self._write_journal(_report_name(row, generation), row)
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
        self._write_journal(f"{trial_id}{_END}", entry)
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
        rows = _with_status(self._rows, self._status)
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


def _report_name(row: dict[str, Any], generation: int) -> str:
    return f"{row['trial_id']}-g{generation}-s{step_of(row)}.json"


def _timestamp(row: dict[str, Any]) -> float:
    value = row.get("timestamp")
    return 0.0 if value is None or value != value else float(value)
