"""Kills a Train worker process from outside, the way a node's OOM killer or a crash would."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path


class KillAWorkerAfterFirstCheckpoint(threading.Thread):
    """Watches `runs` for a Train run's first checkpoint, waits `delay_s` (the run is then
    between checkpoints, inside its steps) and SIGKILLs one rank's worker process, once."""

    def __init__(self, runs: Path, delay_s: float = 0.15) -> None:
        super().__init__(daemon=True)
        self.runs, self.delay_s = runs, delay_s
        self.killed: int | None = None
        self.at_checkpoints: set[str] = set()
        self._done = threading.Event()

    def run(self) -> None:
        from ray.util.state import list_actors

        while not self._done.is_set():
            found = {p.name for p in self.runs.glob("**/checkpoint_*") if p.is_dir()}
            if found:
                time.sleep(self.delay_s)
                workers = list_actors(
                    filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
                )
                if workers:
                    pid = int(max(workers, key=lambda a: a.pid).pid)
                    self.at_checkpoints = {
                        p.name for p in self.runs.glob("**/checkpoint_*") if p.is_dir()
                    }
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)
