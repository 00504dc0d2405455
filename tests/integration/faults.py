"""Fault injection for restart tests; pickled by value so Ray workers need not import it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def sigkill_after_first_checkpoint(marker_dir: str) -> Callable[[dict[str, Any]], None]:
    """The real loop, except that in the first attempt every rank SIGKILLs its own process
    once its first checkpoint is committed: a killed worker group, not a raised exception.

    Leaves `killed-rank{R}` when a rank dies and `resumed-rank{R}` when a rank starts again
    from a checkpoint, so a test can tell that the restart really happened.
    """

    def train_fn(config: dict[str, Any]) -> None:
        import os
        import signal

        from trainables.loop import run_loop
        from trainables.reporter import Reporter, ReporterWrapper
        from trainables.train_reporters import TrainReporter
        from trainables.trainer import read_loop_config

        class ReportThenDie(ReporterWrapper):
            def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
                self.inner.report(metrics, checkpoint_dir)
                if checkpoint_dir is not None:
                    self.inner.kept()  # returns once the checkpoint is committed
                    (Path(marker_dir) / f"killed-rank{self.rank}").touch()
                    os.kill(os.getpid(), signal.SIGKILL)

        reporter: Reporter = TrainReporter()
        if reporter.restore() is None:
            reporter = ReportThenDie(reporter)
        else:
            (Path(marker_dir) / f"resumed-rank{reporter.rank}").touch()
        job, inputs = read_loop_config(config)
        run_loop(job, reporter, inputs)

    return train_fn


def without_rng_restore() -> Callable[[dict[str, Any]], None]:
    """The real loop, except that a resumed rank does not take its RNG streams back from the
    checkpoint (a negative control: exact resume must depend on them)."""

    def train_fn(config: dict[str, Any]) -> None:
        import trainables.checkpointing
        import trainables.loop
        from trainables.trainer import train_fn_per_worker

        real = trainables.checkpointing.load_training_state

        def load_without_rng(folder: Any, rank: int, *args: Any) -> Any:
            return real(folder, rank + 1_000_000, *args)  # no such rank file: RNG left fresh

        trainables.loop.load_training_state = load_without_rng  # type: ignore[assignment]
        train_fn_per_worker(config)

    return train_fn
