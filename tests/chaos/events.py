"""The raw report stream of a sweep, as Tune delivers it, and assertions on what happened.

The product's own records are cleaned views that cannot show a repeated step: the results file
keeps one row per (trial, step), newest first, and its journal names a report by its step (and
is deleted when the file is rewritten); the W&B streamer drops every step at or below the last
one it logged (W&B's steps only go up). A restart from scratch therefore looks like a resume in
all of them. `ReportLog` records, beside the product, every trial start and every result Tune
hands its callbacks (what the results file and W&B are made from), each with its wall time and
the driver's pid, one JSON line per event, appended and flushed as it happens: a SIGKILLed
driver keeps every line it wrote.

A sweep run in the test's process takes it through `run_sweep(callbacks=...)`; a `sweeps run`
command through Tune's own `RAY_TUNE_CALLBACKS` (see `command_env`), with the file named by
`REPORT_LOG_ENV`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from tests.chaos.killer import SNAPSHOT

REPORT_LOG_ENV = "CHAOS_REPORT_LOG"


@dataclass(frozen=True)
class Event:
    """One thing Tune told its callbacks: a trial `start` (also each retry's), a `result`, a
    trial's `complete` or `error`; `wall` is `time.time()` on the driver when it was told."""

    kind: str
    trial_id: str
    wall: float
    pid: int
    step: int | None = None


class ReportLog(Callback):
    """A Tune callback appending every trial start, result and end to a JSON-lines file.

    Args:
        path: The file; by default the one `CHAOS_REPORT_LOG` names (Tune builds the callbacks
            `RAY_TUNE_CALLBACKS` names without arguments).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path if path is not None else os.environ[REPORT_LOG_ENV])

    def _append(self, kind: str, trial: Any, step: int | None = None) -> None:
        line = {"kind": kind, "trial_id": trial.trial_id, "wall": time.time(), "pid": os.getpid()}
        with open(self.path, "a") as handle:  # one short write per event: flushed at close
            handle.write(json.dumps(line | {"step": step}) + "\n")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._append("start", trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._append("result", trial, int(result["step"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._append("complete", trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._append("error", trial)


def command_env(env: dict[str, str], path: Path) -> dict[str, str]:
    """`env` for a `sweeps run` command whose Tune also runs a `ReportLog` into `path`."""
    return env | {
        "RAY_TUNE_CALLBACKS": f"{ReportLog.__module__}.{ReportLog.__name__}",
        REPORT_LOG_ENV: str(path),
    }


def read_events(path: Path) -> list[Event]:
    """Every event of the file, in the order written (a line cut short by a kill is skipped)."""
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(Event(**json.loads(line)))
        except ValueError:
            continue
    return events


def registered_steps(run: Path) -> list[int]:
    """The steps of the checkpoints Ray Train has registered for one Train run, oldest first."""
    snapshot = run / SNAPSHOT
    for _ in range(100):
        if not snapshot.exists():
            return []
        try:
            state = json.loads(snapshot.read_text())
        except ValueError:  # being rewritten
            time.sleep(0.01)
            continue
        return sorted(int(r["metrics"]["step"]) for r in state.get("checkpoint_results", []))
    raise AssertionError(f"{snapshot} never read whole")


def _stream(events: list[Event], trial_id: str, since: float) -> str:
    """A trial's events as lines, wall times relative to `since` (for failure messages)."""
    return "\n".join(
        f"  {e.wall - since:+8.2f}s pid {e.pid} trial {e.trial_id} {e.kind}"
        + (f" step {e.step}" if e.step is not None else "")
        for e in events
        if e.trial_id == trial_id
    )


def assert_went_on_from_checkpoint(
    events: list[Event],
    trial_id: str,
    killed_at: float,
    checkpoint_step: int,
    every: int,
    exact: bool = True,
) -> None:
    """The trial, started again after the kill at `killed_at`, went on from its checkpoint at
    `checkpoint_step`: no report after that start is at or below the checkpoint's step, and
    (`exact`) the first is the next evaluation, `checkpoint_step + every`.

    Reports of the killed attempt that reach the driver after the kill (on their way when it
    happened) precede the trial's next start and are not counted.
    """
    mine = [e for e in events if e.trial_id == trial_id]
    starts = [i for i, e in enumerate(mine) if e.kind == "start" and e.wall > killed_at]
    stream = _stream(events, trial_id, killed_at)
    assert starts, f"trial {trial_id} did not start again after the kill:\n{stream}"
    after = [int(e.step or 0) for e in mine[starts[0] :] if e.kind == "result"]
    assert after, f"trial {trial_id} reported nothing after the kill:\n{stream}"
    repeated = [step for step in after if step <= checkpoint_step]
    assert not repeated, (
        f"trial {trial_id} reported steps {repeated} again after the kill, at or below its last "
        f"checkpoint's step {checkpoint_step} (it started again from scratch):\n{stream}"
    )
    assert not exact or after[0] == checkpoint_step + every, (
        f"trial {trial_id}'s first report after the kill is at step {after[0]}, not "
        f"{checkpoint_step + every} (the evaluation after its checkpoint):\n{stream}"
    )


def assert_only_unfinished_ran_again(
    events: list[Event], killed_at: float, finished: set[str], unfinished: set[str]
) -> None:
    """After the kill at `killed_at`, no trial that had finished started or reported again, and
    the trials that did are exactly the `unfinished` ones (not new trials in their place)."""
    later = [e for e in events if e.wall > killed_at]
    again = sorted({e.trial_id for e in later} & finished)
    stream = "\n".join(_stream(events, t, killed_at) for t in sorted({e.trial_id for e in events}))
    assert not again, f"finished trials {again} ran again after the kill:\n{stream}"
    ran = {e.trial_id for e in later}
    assert ran == unfinished, (
        f"after the kill trials {sorted(ran)} ran, not the unfinished {sorted(unfinished)}:\n"
        f"{stream}"
    )
