"""Where one rank of a run reports, and what it resumes from: the loop's only way out.

The loop (`trainables.loop.run_loop`) is handed a `Reporter` and knows nothing else of where it
runs. Three kinds exist:

- `trainables.train_reporters.TrainReporter`: a rank of a `TorchTrainer` worker group, through
  Ray Train's public API (`ray.train.report`, `get_checkpoint`, `get_context`);
- `trainables.train_reporters.InProcessReporter`: the one rank of a one-worker job run in its
  Tune trial's own process, keeping the run's folder as a `TorchTrainer` run keeps it;
- `MemoryReporter` (here): reports in a list, checkpoints in a folder; for tests and benches.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import ray.train

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class KeptCheckpoint:
    """A checkpoint a run keeps, with the metrics reported with it."""

    checkpoint: ray.train.Checkpoint
    metrics: dict[str, Any] = field(default_factory=dict)


class Reporter(Protocol):
    """One rank's link to its run: who it is, where its reports go, what it resumes from.

    Example (a reporter is all the loop needs besides its job):
        >>> reporter = MemoryReporter()
        >>> reporter.report({"step": 1, "val_loss": 0.5}, checkpoint_dir=None)
        >>> reporter.reports, reporter.restore()
        ([{'step': 1, 'val_loss': 0.5}], None)
    """

    @property
    def rank(self) -> int:
        """This rank's index among the run's ranks (0 reports for all)."""
        ...

    @property
    def world_size(self) -> int:
        """How many ranks the run has."""
        ...

    @property
    def distributed(self) -> bool:
        """Whether the ranks form a DDP worker group (a `TorchTrainer`'s, process group set
        up), not one rank on its own."""
        ...

    @property
    def device(self) -> torch.device:
        """The device this rank trains on."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """Reports `metrics` with this rank's part of a checkpoint, a local folder moved or
        copied into the run's storage before this returns (None: no checkpoint). Every rank
        calls it at the same points; only rank 0's metrics are kept."""
        ...

    def restore(self) -> ray.train.Checkpoint | None:
        """The run's latest checkpoint, what a restarted run resumes from; None for a run that
        has none yet."""
        ...

    def kept(self) -> list[KeptCheckpoint]:
        """Every checkpoint the run keeps (what a damaged latest one falls back on: see
        `trainables.checkpointing.resumable_checkpoint`)."""
        ...


class ReporterWrapper:
    """A reporter that hands everything to `inner`: a base for wrappers that add to one call
    (a test's fault after a committed checkpoint, a bench's clock at every report)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    @property
    def distributed(self) -> bool:
        return self.inner.distributed

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.inner.report(metrics, checkpoint_dir)

    def restore(self) -> ray.train.Checkpoint | None:
        return self.inner.restore()

    def kept(self) -> list[KeptCheckpoint]:
        return self.inner.kept()


class OneRank:
    """The identity of a run's only rank, not part of a worker group: what every one-rank
    reporter shares."""

    rank = 0
    world_size = 1
    distributed = False

    @property
    def device(self) -> torch.device:
        return local_device()


class MemoryReporter(OneRank):
    """One rank on its own that keeps every report's metrics in `reports` and every checkpoint
    in a folder of `folder` (a new temporary one by default), all of them kept.

    Handing the same reporter to a second run resumes it from the first one's last checkpoint.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp())
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: list[KeptCheckpoint] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            target = self.folder / f"checkpoint_{len(self.checkpoints):06d}"
            shutil.copytree(checkpoint_dir, target)
            checkpoint = ray.train.Checkpoint.from_directory(str(target))
            self.checkpoints.append(KeptCheckpoint(checkpoint, dict(metrics)))

    def restore(self) -> ray.train.Checkpoint | None:
        return self.checkpoints[-1].checkpoint if self.checkpoints else None

    def kept(self) -> list[KeptCheckpoint]:
        return list(self.checkpoints)


def local_device() -> torch.device:
    """The device of a rank on its own: the current CUDA device, else the CPU (what Ray Train
    gives a local run)."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
