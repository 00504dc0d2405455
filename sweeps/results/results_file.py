"""Every trial's history in one Parquet file per sweep: the single source for `status`, `best`
and the report.

One row per report: `trial_id`, `trial_status` (as of the last write), `stopped_early`,
`training_iteration`, `timestamp`, every reported metric, `checkpoint_path`, the parameters the
report was made with as `param.<dotted key>` columns, and under PBT the lineage
(`exploited_from`, `exploit_step`, `generation`).

Beside the file, `results.journal/` holds the reports (and trial ends) not yet rewritten into
it, one small file each (`sweeps.results.results_log` writes both). Readers (`read_results`,
`read_table`) merge the journal in: they see every report as soon as it is journaled.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sweeps.results.tune_results import step_of
from sweeps.store import storage
from sweeps.store.storage import Location

RESULTS_FILE = "results.parquet"
JOURNAL = "results.journal"
#: The name ending of a journal file that records a trial's end (its status), not a report.
END_SUFFIX = ".end.json"
PARAM_PREFIX = "param."
#: Lineage columns (PBT): the first report after an exploit names the trial it copied and that
#: trial's step; `generation` counts a trial's exploits so far.
EXPLOITED_FROM, EXPLOIT_STEP, GENERATION = "exploited_from", "exploit_step", "generation"

#: A report's identity: (trial, generation, loop step).
Key = tuple[str, int, int]
#: Each trial's status and whether it was stopped early.
Status = dict[str, tuple[str, bool]]


def read_results(uri: str) -> list[dict[str, Any]]:
    """Every report of a sweep, oldest first: its results file with the journal's newer rows
    and trial ends merged in; [] when there is none yet."""
    table, entries = read_parts(uri)
    rows = [] if table is None else table.to_pylist()
    return merge(rows, entries) if entries else rows


def read_table(uri: str) -> pa.Table | None:
    """`read_results` as an Arrow table; None when there is nothing yet."""
    table, entries = read_parts(uri)
    if not entries:
        return table
    return _to_table(merge([] if table is None else table.to_pylist(), entries))


def read_parts(uri: str) -> tuple[pa.Table | None, list[tuple[str, dict[str, Any]]]]:
    """The results file (None if not there yet) and the journal's (name, entry) pairs."""
    journal = journal_of(uri)
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


def journal_of(uri: str) -> Location:
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


def report_key(row: dict[str, Any]) -> Key:
    return (row["trial_id"], generation_of(row), step_of(row))


def fold(
    rows: list[dict[str, Any]], entries: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[Key, dict[str, Any]], Status]:
    """The file's rows with the journal's reports (the newer copy of a step wins) and trial
    ends applied: the reports by key, and each trial's status."""
    by_key = {report_key(row): row for row in rows}
    status = {row["trial_id"]: (row["trial_status"], bool(row["stopped_early"])) for row in rows}
    for name, entry in entries:
        if name.endswith(END_SUFFIX):
            status[entry["trial_id"]] = (entry["trial_status"], bool(entry["stopped_early"]))
        else:
            by_key[report_key(entry)] = entry
    return by_key, status


def merge(
    rows: list[dict[str, Any]], entries: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """`fold`'s reports oldest first, each with its trial's status."""
    return with_status(*fold(rows, entries))


def with_status(by_key: dict[Key, dict[str, Any]], status: Status) -> list[dict[str, Any]]:
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


def params_of(row: dict[str, Any]) -> dict[str, Any]:
    """The trial parameters a results row carries."""
    return {
        k.removeprefix(PARAM_PREFIX): v
        for k, v in row.items()
        if k.startswith(PARAM_PREFIX) and v is not None
    }


def report_name(row: dict[str, Any], generation: int) -> str:
    """The journal file name of a report."""
    return f"{row['trial_id']}-g{generation}-s{step_of(row)}.json"


def _timestamp(row: dict[str, Any]) -> float:
    value = row.get("timestamp")
    return 0.0 if value is None or value != value else float(value)
