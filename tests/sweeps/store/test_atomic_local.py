"""Tune's local storage keeps whole files through a SIGKILLed writer (`sweeps.store.atomic_local`),
and a resume refuses a damaged Tune state file by name (`sweeps.running.resume`)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sweeps.errors import StorageError
from sweeps.running.resume import check_tune_state
from sweeps.store.storage import Location

OLD = b"the complete previous state\n"

# Writes 4 MiB of the new state through the named filesystem, says so, then waits to be killed.
WRITER = """
import sys, time
import pyarrow.fs as pa_fs
from sweeps.store.atomic_local import atomic_local_filesystem
fs = atomic_local_filesystem() if sys.argv[1] == "atomic" else pa_fs.LocalFileSystem()
out = fs.open_output_stream(sys.argv[2])
out.write(b"n" * (4 << 20))
out.flush()
print("written", flush=True)
time.sleep(600)
"""


def _kill_mid_write(kind: str, path: Path) -> bytes:
    path.write_bytes(OLD)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[3],
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == b"written\n"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    return path.read_bytes()


def test_a_writer_killed_mid_file_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    assert _kill_mid_write("atomic", tmp_path / "searcher-state.pkl") == OLD


def test_control_pyarrows_local_filesystem_leaves_the_killed_writers_torn_file(
    tmp_path: Path,
) -> None:
    assert _kill_mid_write("local", tmp_path / "searcher-state.pkl") != OLD


def _tune_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "experiment_state-2026.json").write_text('{"trial_data": []}')
    (folder / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"counter": 2}))
    # Tune pickles its search generator's state under a `.json` name.
    (folder / "search_gen_state-2026.json").write_bytes(pickle.dumps({"counter": 2}))
    (folder / "sweep_spec.yaml").write_text("name: sweep\n")
    return folder


def test_a_resume_over_a_whole_tune_state_goes_ahead(tmp_path: Path) -> None:
    check_tune_state(Location.of(str(_tune_folder(tmp_path))))


def test_a_resume_over_an_empty_searcher_state_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    folder = _tune_folder(tmp_path)
    (folder / "searcher-state-2026.pkl").write_bytes(b"")
    with pytest.raises(StorageError, match=r"searcher-state-2026\.pkl does not load"):
        check_tune_state(Location.of(str(folder)))


def test_a_resume_over_a_torn_experiment_state_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    folder = _tune_folder(tmp_path)
    (folder / "experiment_state-2026.json").write_text('{"trial_data": [')
    with pytest.raises(StorageError, match=r"experiment_state-2026\.json does not load"):
        check_tune_state(Location.of(str(folder)))


def test_a_resume_over_state_naming_code_that_moved_is_refused_as_another_versions(
    tmp_path: Path,
) -> None:
    # Pickled while its class's module existed (as an older version's callbacks were), read
    # after the module is gone (as after a move).
    module = types.ModuleType("an_earlier_layout")

    class Moved:
        pass

    Moved.__module__, Moved.__qualname__ = module.__name__, "Moved"
    module.Moved = Moved  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        data = pickle.dumps(Moved())
    finally:
        del sys.modules[module.__name__]
    folder = _tune_folder(tmp_path)
    (folder / "tuner.pkl").write_bytes(data)
    with pytest.raises(StorageError, match=r"tuner\.pkl names code .* another version"):
        check_tune_state(Location.of(str(folder)))
