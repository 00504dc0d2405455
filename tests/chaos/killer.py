"""Kills a Train worker process from outside, the way a node's OOM killer or a crash would."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from trainables.ray_compat import train_snapshot_name

# Ray Train's record of a run's registered checkpoints.
SNAPSHOT = train_snapshot_name()


def registered_checkpoints(runs: Path) -> set[str]:
    """The checkpoints Train has registered in any run below `runs` (a folder on disk may be
    one still being written: a kill then would restart the run from scratch, not resume it)."""
    names: set[str] = set()
    for snapshot in runs.glob(f"**/{SNAPSHOT}"):
        try:
            state = json.loads(snapshot.read_text())
        except (OSError, ValueError):  # being rewritten
            continue
        names |= {r["checkpoint_dir_name"] for r in state.get("checkpoint_results", [])}
    return names


class KillAWorkerAfterFirstCheckpoint(threading.Thread):
    """Watches `runs` for a Train run's first registered checkpoint, waits `delay_s` (the run
    is then between checkpoints, inside its steps) and SIGKILLs one rank's worker process, once.
    """

    def __init__(self, runs: Path, delay_s: float = 0.15) -> None:
        super().__init__(daemon=True)
        self.runs, self.delay_s = runs, delay_s
        self.killed: int | None = None
        self.at_checkpoints: set[str] = set()
        self._done = threading.Event()

    def run(self) -> None:
        from ray.util.state import list_actors

        while not self._done.is_set():
            if registered_checkpoints(self.runs):
                time.sleep(self.delay_s)
                workers = list_actors(
                    filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
                )
                if workers:
                    pid = int(max(workers, key=lambda a: a.pid).pid)
                    self.at_checkpoints = registered_checkpoints(self.runs)
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)
