"""A one-worker job run in the calling process: no Train controller, no worker actors.

A `TorchTrainer` starts a controller and a worker process per `fit()`, each importing torch and
the model libraries, and sets up a placement group and a process group: ~10 s per trial on a
2-core laptop, most of a small trial. A one-worker job needs none of that, so a sweep's trial
runs the loop itself, in its Tune trial's process, with an `InProcessReporter`: the run's
folder is what a `TorchTrainer` run leaves (`trainables/train_reporters.py`).
"""

from __future__ import annotations

import pyarrow.fs as pa_fs

from trainables.config import FinetuneConfig
from trainables.inputs import NO_INPUTS, TrialInputs
from trainables.ray_compat import RunCheckpoints, RunStorage
from trainables.train_reporters import InProcessReporter, OnReport
from trainables.trainer import checkpoint_config, resolve_storage


def runs_in_process(job: FinetuneConfig) -> bool:
    """Whether a sweep runs `job` in its trial's process: one worker (more need DDP's group)."""
    return job.scaling.num_workers == 1


def run_in_process(
    job: FinetuneConfig,
    inputs: TrialInputs = NO_INPUTS,
    *,
    run_name: str,
    storage_path: str,
    on_report: OnReport,
    storage_filesystem: pa_fs.FileSystem | None = None,
) -> None:
    """Runs `job`'s loop as the one rank of the run `storage_path/run_name`, here.

    Args:
        job: A one-worker job.
        inputs: What the run is handed beside the job (a checkpoint to start from, prepared
            tokens).
        run_name: The run's folder name; a run that has checkpoints there resumes.
        storage_path: Absolute path or URI the run's folder lives under.
        on_report: Gets every report after its checkpoint is stored and registered.
        storage_filesystem: A pyarrow filesystem for `storage_path` (S3 with an endpoint).
    """
    from trainables.loop import run_loop  # torch and the model libraries

    storage = RunStorage.create(resolve_storage(storage_path), run_name, storage_filesystem)
    checkpoints = RunCheckpoints(storage, checkpoint_config(job))
    run_loop(job, InProcessReporter(storage, checkpoints, on_report), inputs)
