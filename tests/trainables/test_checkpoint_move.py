"""A reported checkpoint goes into local storage by renames, not a second full write
(`trainables.train_reporters.move_local_checkpoint`), and storage elsewhere is left to Train's
copy."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pa_fs
import ray.train

from trainables.ray_compat import RunStorage
from trainables.train_reporters import move_local_checkpoint


def rank_part(folder: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """Writes one rank's part of a checkpoint (nested paths too); returns what it wrote."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def contents(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_a_local_checkpoint_lands_in_storage_byte_for_byte_and_leaves_its_source_empty(
    tmp_path: Path,
) -> None:
    source = tmp_path / "tmp-ckpt"
    wrote = rank_part(source, {"model.safetensors": b"w" * 1000, "state/rng_rank0.pt": b"r0"})
    storage = RunStorage.create(str(tmp_path / "storage"), "run")

    moved = move_local_checkpoint(
        ray.train.Checkpoint.from_directory(str(source)), storage, "checkpoint_000"
    )

    assert moved is not None
    assert Path(moved.path) == tmp_path / "storage" / "run" / "checkpoint_000"
    assert contents(Path(moved.path)) == wrote
    assert contents(source) == {}


def test_two_ranks_parts_merge_into_one_checkpoint(tmp_path: Path) -> None:
    storage = RunStorage.create(str(tmp_path / "storage"), "run")
    expected: dict[str, bytes] = {}
    for rank in (0, 1):
        source = tmp_path / f"rank{rank}"
        expected |= rank_part(source, {f"rng_rank{rank}.pt": bytes([rank]) * 10})
        moved = move_local_checkpoint(
            ray.train.Checkpoint.from_directory(str(source)), storage, "checkpoint_000"
        )
        assert moved is not None

    assert contents(tmp_path / "storage" / "run" / "checkpoint_000") == expected


def test_storage_on_another_filesystem_is_not_touched(tmp_path: Path) -> None:
    """Not a `LocalFileSystem` (as S3 is not): nothing moves, Train's copy does the work."""
    source = tmp_path / "tmp-ckpt"
    wrote = rank_part(source, {"model.safetensors": b"w" * 10})
    (tmp_path / "storage").mkdir()
    elsewhere = pa_fs.SubTreeFileSystem(str(tmp_path / "storage"), pa_fs.LocalFileSystem())
    storage = RunStorage.create("/", "run", elsewhere)

    moved = move_local_checkpoint(
        ray.train.Checkpoint.from_directory(str(source)), storage, "checkpoint_000"
    )

    assert moved is None
    assert contents(source) == wrote
