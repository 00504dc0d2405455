"""A local filesystem whose files appear whole or not at all: what Ray Tune's storage gets when
a sweep's storage path is a local folder.

Tune saves its experiment state (the trials, the searcher) to a staging folder at every turn
and copies the folder to the storage path in a background thread. Object stores publish an
upload atomically; a local (or NFS) destination is written in place, so a driver killed during
the copy leaves a truncated file. One did (CI, `tests/chaos/test_driver_killed.py`): the
searcher's state was 0 bytes, Tune's resume failed half-way, fell back to a fresh experiment
with the old searcher counters, and waited for trials that never came. Here every file opened
for writing is written to a hidden sibling and renamed over its name on close.

Only Tune's own storage goes through this (`tune_storage`); Train runs, results and promotion
keep pyarrow's `LocalFileSystem`, whose checkpoints Ray reads in place.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pa_fs

# A torn copy is left under this prefix (never under a name Tune or the results reader
# lists: Tune's resume takes `*.json` / `*.pkl`, the results reader its own names).
PARTIAL_PREFIX = ".partial-"


class _RenameOnClose:
    """A writable file that becomes `path` only when closed; a file-like for `pa.PythonFile`."""

    def __init__(self, path: str) -> None:
        folder, name = os.path.split(path)
        self.path = path
        # pyarrow's copy of a folder asks for files before their folders exist.
        os.makedirs(folder, exist_ok=True)
        self.partial = os.path.join(folder, f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{name}")
        self._file = open(self.partial, "wb")  # noqa: SIM115

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        # Data before name: after a crash of the machine (not only of the process) the
        # renamed file is not empty either.
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)


class AtomicLocalHandler(pa_fs.FileSystemHandler):
    """pyarrow's `LocalFileSystem`, except that output streams rename into place on close."""

    def __init__(self) -> None:
        self._local = pa_fs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(AtomicLocalHandler)

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return AtomicLocalHandler, ()

    def get_type_name(self) -> str:
        return "atomic-local"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pa_fs.FileInfo]:
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector: pa_fs.FileSelector) -> list[pa_fs.FileInfo]:
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the local root folder")

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._local.open_input_stream(src) as source, self.open_output_stream(dest, {}) as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: dict[str, str]) -> pa.NativeFile:
        return pa.PythonFile(_RenameOnClose(path), mode="w")

    def open_append_stream(self, path: str, metadata: dict[str, str]) -> pa.NativeFile:
        return self._local.open_append_stream(path)


def atomic_local_filesystem() -> pa_fs.PyFileSystem:
    """A filesystem over local paths whose written files appear whole (see the module doc)."""
    return pa_fs.PyFileSystem(AtomicLocalHandler())
