"""Every private or undocumented Ray name the project uses resolves in the installed Ray
(`trainables/ray_compat.py`), and one that an upgrade moved fails naming it; what the compat
functions read from Ray (the snapshot file, checkpoint folder names) is what Train writes."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import ray.train
import ray.train.torch
import ray.tune

from trainables import ray_compat
from trainables.compat_names import CompatError
from trainables.ray_compat import (
    PRIVATE_NAMES,
    RunCheckpoints,
    RunStorage,
    checkpoint_time,
    snapshot_reports,
    train_snapshot_name,
)


@pytest.mark.parametrize("name", PRIVATE_NAMES)
def test_every_private_ray_name_resolves_in_the_installed_ray(name: str) -> None:
    ray_compat.resolve(name)


@pytest.mark.parametrize(
    ("planted", "named"),
    [
        (
            "ray.train.v2._internal.execution.storage:StorageContextV3",
            "ray.train.v2._internal.execution.storage.StorageContextV3: not found in ray",
        ),
        (
            "ray.train.v2._internal.execution.storage:StorageContext._check_validation_files",
            "StorageContext._check_validation_files: not found in ray",
        ),
        ("ray._private.statez:state", "ray._private.statez.state: not found in ray"),
    ],
)
def test_a_renamed_ray_symbol_fails_naming_it(planted: str, named: str) -> None:
    # The positive control of the test above: a name that moved is caught, and said.
    with pytest.raises(CompatError, match="not found") as caught:
        ray_compat.resolve(planted)
    assert named in str(caught.value)
    assert ray.__version__ in str(caught.value)


def checkpoint_folder(tmp_path: Path, name: str) -> ray.train.Checkpoint:
    folder = tmp_path / "local" / name
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(name.encode())
    return ray.train.Checkpoint.from_directory(str(folder))


def test_a_registered_checkpoint_is_in_trains_snapshot_as_train_writes_it(
    tmp_path: Path,
) -> None:
    storage = RunStorage.create(str(tmp_path / "runs"), "run")
    config = ray.train.CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
    )
    checkpoints = RunCheckpoints(storage, config)
    names = []
    for step, loss in [(1, 0.5), (2, 0.3), (3, 0.4)]:
        name = RunStorage.new_checkpoint_name()
        names.append(name)
        stored = storage.copy_checkpoint(checkpoint_folder(tmp_path, name), name)
        checkpoints.register(stored, {"step": step, "val_loss": loss})
        time.sleep(0.01)  # names hold the time to the microsecond

    run = tmp_path / "runs" / "run"
    snapshot = run / train_snapshot_name()
    assert snapshot.is_file()
    # Read back as results recovery reads it, against the folders Train left: the best (step 2)
    # and the latest (step 3, never deleted) kept, step 1 deleted.
    reports = snapshot_reports(snapshot.read_text())
    assert {(m["step"], name) for m, name in reports} == {(2, names[1]), (3, names[2])}
    assert {p.name for p in run.glob("checkpoint_*") if p.is_dir()} == {names[1], names[2]}
    latest = checkpoints.latest()
    assert latest is not None and Path(latest.path).name == names[2]
    assert sorted(m["step"] for _, m in checkpoints.kept()) == [2]
    # The control: the snapshot is Train's own JSON, not something `snapshot_reports` made up.
    state = json.loads(snapshot.read_text())
    assert state["latest_checkpoint_result"]["checkpoint_dir_name"] == names[2]


def test_a_rerun_of_a_run_reads_its_checkpoints_back_from_the_snapshot(tmp_path: Path) -> None:
    config = ray.train.CheckpointConfig(num_to_keep=None)
    storage = RunStorage.create(str(tmp_path / "runs"), "run")
    first = RunCheckpoints(storage, config)
    name = RunStorage.new_checkpoint_name()
    first.register(storage.copy_checkpoint(checkpoint_folder(tmp_path, name), name), {"step": 7})

    again = RunCheckpoints(RunStorage.create(str(tmp_path / "runs"), "run"), config)

    latest = again.latest()
    assert latest is not None and Path(latest.path).name == name


def test_a_checkpoint_folders_name_holds_the_time_it_was_named() -> None:
    before = time.time()
    named = checkpoint_time(RunStorage.new_checkpoint_name())
    assert before - 1 <= named <= time.time() + 1
    assert math.isnan(checkpoint_time("checkpoint_final"))


def test_a_local_storage_is_reachable_and_names_its_checkpoint_folders(tmp_path: Path) -> None:
    storage = RunStorage.create(str(tmp_path / "runs"), "run")
    storage.check_reachable()
    run = tmp_path / "runs" / "run"
    assert storage.checkpoint_path("checkpoint_x") == str(run / "checkpoint_x")
    assert type(storage.filesystem).__name__ == "LocalFileSystem"


def test_tune_stops_propagating_the_named_variables() -> None:
    propagated = ray_compat.resolve("ray.tune.execution.class_cache:ENV_VARS_TO_PROPAGATE")
    before = set(propagated)
    try:
        ray_compat.stop_propagating_env({"AWS_SECRET_ACCESS_KEY"})
        assert "AWS_SECRET_ACCESS_KEY" not in propagated
    finally:
        propagated |= before


def test_a_tuners_run_config_is_the_one_it_was_built_with(tmp_path: Path) -> None:
    run_config = ray.tune.RunConfig(name="compat", storage_path=str(tmp_path))
    tuner = ray.tune.Tuner(lambda config: None, run_config=run_config)
    assert ray_compat.restored_run_config(tuner).name == "compat"


def test_tune_report_callback_puts_the_checkpoint_path_where_results_read_it() -> None:
    assert ray_compat.checkpoint_path_key() == "checkpoint_path"


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
def test_a_fixed_local_cluster_has_no_autoscaler_node_groups() -> None:
    assert ray_compat.autoscaler_node_groups() == []


def _callback_names(trainer: object) -> set[str]:
    return {type(c).__name__ for c in trainer._create_default_callbacks()}  # type: ignore[attr-defined]


def test_the_trainer_leaves_out_ray_datas_manager_when_the_run_has_no_datasets() -> None:
    trainer = ray_compat.trainer_without_unused_datasets()(lambda: None)
    assert "DatasetsCallback" not in _callback_names(trainer)
    # The control: Ray's own TorchTrainer starts it (the `DatasetManager` actor) in every run.
    assert "DatasetsCallback" in _callback_names(ray.train.torch.TorchTrainer(lambda: None))


def test_the_trainer_keeps_ray_datas_manager_for_a_run_given_datasets() -> None:
    # A dataset factory (Train accepts one in place of a Dataset), so no Ray starts here.
    trainer = ray_compat.trainer_without_unused_datasets()(
        lambda: None, datasets={"train": lambda: None}
    )
    assert "DatasetsCallback" in _callback_names(trainer)
