"""Every private or undocumented Ray name the project uses, behind this one door.

Ray's public API has no way to do these things (each function says why); all of them were
checked against Ray `CHECKED_WITH`, the release `pyproject.toml` pins. Each name is listed in
`PRIVATE_NAMES` and resolved through `resolve`, so an upgrade that moves one fails loudly,
naming it (`trainables.compat_names.CompatError`), here and in
`tests/trainables/test_ray_compat.py`, instead of silently doing nothing. Nothing outside this
module imports `ray.train.v2._internal`, `ray._private` or `ray.tune.execution`, or spells
Train's snapshot file or checkpoint-folder names.

`sweeps` may import this module.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from typing import Any

import pyarrow.fs as pa_fs
import ray
import ray.train

from trainables.compat_names import resolve_name

#: The Ray release every name below was checked against.
CHECKED_WITH = "2.60.0"

_STORAGE = "ray.train.v2._internal.execution.storage:StorageContext"
_MANAGER = "ray.train.v2._internal.execution.checkpoint.checkpoint_manager:CheckpointManager"
_REPORT = "ray.train.v2._internal.execution.training_report:_TrainingReport"
_SNAPSHOT = "ray.train.v2._internal.constants:CHECKPOINT_MANAGER_SNAPSHOT_FILENAME"
_CLUSTER_STATE = "ray._private.state:state"
_PROPAGATED_ENV = "ray.tune.execution.class_cache:ENV_VARS_TO_PROPAGATE"
_LOCAL_TUNER = "ray.tune.tuner:Tuner._local_tuner"
_CHECKPOINT_PATH_KEY = "ray.tune.integration.ray_train:CHECKPOINT_PATH_KEY"
_DEFAULT_CALLBACKS = (
    "ray.train.v2.api.data_parallel_trainer:DataParallelTrainer._create_default_callbacks"
)
_DATASETS_CALLBACK = "ray.train.v2._internal.callbacks.datasets:DatasetsCallback"

#: Every private or undocumented name used here, as `module:attribute.path`.
PRIVATE_NAMES = (
    _STORAGE,
    f"{_STORAGE}.persist_current_checkpoint",
    f"{_STORAGE}.build_checkpoint_path_from_name",
    f"{_STORAGE}.make_default_checkpoint_dir_name",
    f"{_STORAGE}._check_validation_file",
    f"{_STORAGE}.storage_filesystem",
    "ray.train.v2.api.context:TrainContext.get_storage",
    _MANAGER,
    f"{_MANAGER}.register_checkpoint",
    f"{_MANAGER}._notify",
    f"{_MANAGER}.latest_checkpoint_result",
    f"{_MANAGER}.best_checkpoint_results",
    _REPORT,
    _SNAPSHOT,
    _CLUSTER_STATE,
    "ray._private.state:GlobalState.get_cluster_config",
    _PROPAGATED_ENV,
    _LOCAL_TUNER,
    "ray.tune.impl.tuner_internal:TunerInternal.get_run_config",
    _CHECKPOINT_PATH_KEY,
    _DEFAULT_CALLBACKS,
    _DATASETS_CALLBACK,
)

#: The time in the name Train gives a checkpoint folder: `checkpoint_2026-12-04_17-20-01.123456`.
CHECKPOINT_PREFIX = "checkpoint_"
CHECKPOINT_TIME_FORMAT = "%Y-%m-%d_%H-%M-%S.%f"


@functools.cache
def resolve(name: str) -> Any:
    """The object `name` (`module:attribute.path`) points to in the installed Ray (None for an
    attribute set on instances).

    Raises:
        CompatError: naming `name` and the installed Ray, when it is not there.
    """
    return resolve_name(
        name, library="ray", checked_with=CHECKED_WITH, home="trainables/ray_compat.py"
    )


# --- a Train run's storage and checkpoints ------------------------------------------------------


class RunStorage:
    """The folder of one Train run in its storage, as Train lays it out (`StorageContext`).

    Public Ray has no handle on a run's storage outside `TrainContext.get_storage()` (a
    DeveloperAPI that returns this private class), yet a checkpoint is moved in place of Train's
    copy (`trainables/train_reporters.py`) and a one-worker run writes the same folder as a
    `TorchTrainer` run without one.
    """

    def __init__(self, context: Any) -> None:
        for name in PRIVATE_NAMES:
            if name.startswith(_STORAGE):
                resolve(name)
        self._context = context

    @classmethod
    def create(
        cls, storage_path: str, run_name: str, filesystem: pa_fs.FileSystem | None = None
    ) -> RunStorage:
        """The run `run_name` under `storage_path` (an absolute path or URI), created (with
        Train's validation marker) if it is not there."""
        return cls(resolve(_STORAGE)(storage_path, run_name, filesystem))

    @classmethod
    def of_train_worker(cls) -> RunStorage:
        """The storage of the run this Train worker belongs to."""
        return cls(ray.train.get_context().get_storage())

    @property
    def filesystem(self) -> pa_fs.FileSystem:
        """The filesystem the run's folder is on."""
        return self._context.storage_filesystem

    def checkpoint_path(self, name: str) -> str:
        """Where the checkpoint folder `name` of the run goes, on `filesystem`."""
        return str(self._context.build_checkpoint_path_from_name(name))

    def check_reachable(self) -> None:
        """Raises what Train raises before a copy when this node cannot see the run's storage
        (a local path on another node's disk): its validation marker is missing."""
        self._context._check_validation_file()

    def copy_checkpoint(self, checkpoint: ray.train.Checkpoint, name: str) -> ray.train.Checkpoint:
        """Train's own copy of a checkpoint into the run's folder `name` (what `ray.train.report`
        does without an upload function)."""
        return self._context.persist_current_checkpoint(checkpoint, name)

    @staticmethod
    def new_checkpoint_name() -> str:
        """The folder name Train gives the next checkpoint (`checkpoint_<time>`)."""
        return str(resolve(f"{_STORAGE}.make_default_checkpoint_dir_name")())


class RunCheckpoints:
    """Which checkpoints a run keeps, as a `TorchTrainer`'s controller keeps them (Train's
    `CheckpointManager`): registering one keeps the best N by the monitored metric and the
    latest, deletes the rest, and writes the run's snapshot (`train_snapshot_name`), which a
    rerun of the run reads back.
    """

    def __init__(self, storage: RunStorage, config: ray.train.CheckpointConfig) -> None:
        self._manager = _manager_without_controller()(config, storage._context)

    def register(self, checkpoint: ray.train.Checkpoint, metrics: dict[str, Any]) -> None:
        """Registers a checkpoint already in the run's folder with its report's metrics."""
        self._manager.register_checkpoint(resolve(_REPORT)(checkpoint, metrics, False))

    def latest(self) -> ray.train.Checkpoint | None:
        """The latest registered checkpoint (what a rerun resumes from)."""
        latest = self._manager.latest_checkpoint_result
        return latest.checkpoint if latest else None

    def kept(self) -> list[tuple[ray.train.Checkpoint, dict[str, Any]]]:
        """Every checkpoint kept, with the metrics reported with it."""
        return [(r.checkpoint, r.metrics) for r in self._manager.best_checkpoint_results]


@functools.cache
def _manager_without_controller() -> type:
    """Train's checkpoint manager without the controller's event loop: a report registers its
    checkpoint (keep the best N, write the snapshot, delete the rest) before the loop goes on."""
    for name in PRIVATE_NAMES:
        if name.startswith(_MANAGER):
            resolve(name)

    class WithoutController(resolve(_MANAGER)):  # type: ignore[misc]
        def _notify(self) -> None:
            # Wakes coroutines waiting on new checkpoints in the controller; none wait here.
            pass

    return WithoutController


def train_snapshot_name() -> str:
    """The file in a Train run's folder that records its committed checkpoints."""
    return str(resolve(_SNAPSHOT))


def snapshot_reports(text: str) -> list[tuple[dict[str, Any], str]]:
    """The reports a Train run's snapshot (the text of its `train_snapshot_name` file)
    records, each as its metrics and its checkpoint folder's name: the kept ones, then the
    latest (which may be one of them)."""
    state = json.loads(text)
    committed = [*state.get("checkpoint_results", []), state.get("latest_checkpoint_result")]
    return [(r["metrics"], r["checkpoint_dir_name"]) for r in committed if r]


def checkpoint_time(name: str) -> float:
    """The time (epoch seconds) in a Train checkpoint folder's name; nan for another name."""
    try:
        when = dt.datetime.strptime(name.removeprefix(CHECKPOINT_PREFIX), CHECKPOINT_TIME_FORMAT)
    except ValueError:
        return math.nan
    return when.timestamp()


# --- a Train run's processes ---------------------------------------------------------------------


@functools.cache
def trainer_without_unused_datasets() -> type:
    """`TorchTrainer` that starts Ray Data's `DatasetManager` actor only for a run given Ray
    Datasets. Train starts one in every run, datasets or not: one more process (Ray imported,
    ~1.5 CPU-seconds) beside the controller and workers of every trial, and the loop reads its
    own data. No public setting leaves it out."""
    from ray.train.torch import TorchTrainer

    resolve(_DEFAULT_CALLBACKS)  # the method overridden below
    datasets_callback = resolve(_DATASETS_CALLBACK)

    class WithoutUnusedDatasets(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            callbacks = super()._create_default_callbacks()
            if self.datasets:
                return callbacks
            return [c for c in callbacks if not isinstance(c, datasets_callback)]

    return WithoutUnusedDatasets


# --- the cluster and Tune -----------------------------------------------------------------------


def autoscaler_node_groups() -> list[tuple[dict[str, float], int]]:
    """The node types an autoscaling cluster (cluster launcher, KubeRay) may launch, each as
    its resources and its most nodes (-1: unbounded); empty on a fixed cluster.

    Ray publishes them nowhere public; Ray Data's own autoscaler reads them the same way.
    """
    config = resolve(_CLUSTER_STATE).get_cluster_config()
    return [
        ({k: float(v) for k, v in group.resources.items()}, int(group.max_count))
        for group in (config.node_group_configs if config is not None else ())
    ]


def stop_propagating_env(names: set[str]) -> None:
    """Stops Tune from copying these variables of the driver's environment into every trial
    actor's runtime env (no public setting turns the copy off)."""
    resolve(_PROPAGATED_ENV).difference_update(names)


def restored_run_config(tuner: Any) -> Any:
    """The run config of a restored `Tuner`, to change in place: `Tuner.restore` takes no
    callbacks and the run config has no public setter."""
    resolve(_LOCAL_TUNER)  # the name read below
    return tuner._local_tuner.get_run_config()


def checkpoint_path_key() -> str:
    """The metric `TuneReportCallback` puts a Train checkpoint's path under."""
    return str(resolve(_CHECKPOINT_PATH_KEY))
