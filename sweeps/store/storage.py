"""Where a sweep keeps things: a local folder or object storage, through pyarrow filesystems.

A `Location` is an absolute local path or a URI that pyarrow understands (`s3://bucket/prefix`,
`gs://bucket/prefix`), optionally with pyarrow's query options
(`s3://bucket/prefix?endpoint_override=host:port&scheme=http&region=eu-west-1`). Ray's storage
takes the same strings, so one location serves Tune, Train, the results file and promotion.
Credentials come from the environment (or the cloud's metadata service), never from a spec.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pyarrow.fs as pa_fs

from sweeps.errors import StorageError

_CHUNK = 1 << 20
# Query options that would carry a credential: never shown in messages.
_SECRET_OPTIONS = ("access_key", "secret_key", "session_token")


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> tuple[pa_fs.FileSystem, str]:
    return pa_fs.FileSystem.from_uri(root)


@dataclass(frozen=True)
class Location:
    """A folder or file on local disk or object storage (see the module docstring)."""

    scheme: str  # "" for local disk
    path: str  # posix path; for object storage "bucket/key..."
    query: str = ""

    @classmethod
    def of(cls, text: str) -> Location:
        """Parses a local path (made absolute) or a `scheme://` URI."""
        text = str(text)
        if "://" not in text:
            return cls("", str(Path(text).expanduser().resolve()))
        scheme, rest = text.split("://", 1)
        path, _, query = rest.partition("?")
        return cls(scheme, path.rstrip("/"), query)

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        """The string Ray and pyarrow take."""
        if self.is_local:
            return self.path
        return f"{self.scheme}://{self.path}" + (f"?{self.query}" if self.query else "")

    def __str__(self) -> str:
        """The URI with any credential in its query masked: safe to print."""
        if not self.query:
            return self.uri
        options = [
            (k, "***" if k in _SECRET_OPTIONS else v)
            for k, v in parse_qsl(self.query, keep_blank_values=True)
        ]
        return f"{self.scheme}://{self.path}?{urlencode(options, safe=':/')}"

    def join(self, *parts: str) -> Location:
        """A location below this one."""
        return Location(self.scheme, posixpath.join(self.path, *parts), self.query)

    def at(self, fs_path: str) -> Location:
        """Another path on the same filesystem (e.g. a checkpoint path Ray reported)."""
        return Location(self.scheme, fs_path.rstrip("/"), self.query)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def filesystem(self) -> tuple[pa_fs.FileSystem, str]:
        """The pyarrow filesystem and this location's path on it."""
        if self.is_local:
            return pa_fs.LocalFileSystem(), self.path
        root = Location(self.scheme, self.path.split("/", 1)[0], self.query).uri
        fs, bucket = _filesystem(root)
        rest = self.path.split("/", 1)[1] if "/" in self.path else ""
        return fs, posixpath.join(bucket, rest) if rest else bucket


def tune_storage(loc: Location) -> tuple[str, pa_fs.FileSystem | None]:
    """The `storage_path` and `storage_filesystem` Ray Tune gets for `loc`: a local folder
    through `atomic_local` (Tune's state files appear whole or not at all), object storage by
    its URI (an upload is published whole)."""
    if loc.is_local:
        from sweeps.store.atomic_local import atomic_local_filesystem

        return loc.path, atomic_local_filesystem()
    return loc.uri, None


def exists(loc: Location) -> bool:
    fs, path = loc.filesystem()
    return fs.get_file_info(path).type != pa_fs.FileType.NotFound


def read_bytes(loc: Location) -> bytes:
    fs, path = loc.filesystem()
    with fs.open_input_stream(path) as handle:
        return handle.read()


def read_text(loc: Location) -> str:
    return read_bytes(loc).decode()


def write_bytes(loc: Location, data: bytes) -> None:
    """Writes a whole file (object stores make the write visible atomically on close)."""
    fs, path = loc.filesystem()
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as handle:
        handle.write(data)


def write_text(loc: Location, text: str) -> None:
    write_bytes(loc, text.encode())


def delete(loc: Location) -> None:
    """Removes a file or a whole folder; nothing there is fine."""
    fs, path = loc.filesystem()
    kind = fs.get_file_info(path).type
    if kind == pa_fs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pa_fs.FileType.File:
        fs.delete_file(path)


def files(loc: Location, recursive: bool = True) -> list[str]:
    """Every file below a folder (or only in it), as sorted posix paths relative to it."""
    fs, path = loc.filesystem()
    if fs.get_file_info(path).type != pa_fs.FileType.Directory:
        return []
    found = fs.get_file_info(pa_fs.FileSelector(path, recursive=recursive))
    return sorted(
        posixpath.relpath(info.path, path) for info in found if info.type == pa_fs.FileType.File
    )


def folders(loc: Location) -> list[str]:
    """The names of the folders directly below `loc`."""
    fs, path = loc.filesystem()
    if fs.get_file_info(path).type != pa_fs.FileType.Directory:
        return []
    found = fs.get_file_info(pa_fs.FileSelector(path))
    return sorted(posixpath.basename(i.path) for i in found if i.type == pa_fs.FileType.Directory)


def stream(loc: Location) -> Iterator[bytes]:
    """A file's bytes in chunks."""
    fs, path = loc.filesystem()
    with fs.open_input_stream(path) as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def sha256(loc: Location) -> str:
    digest = hashlib.sha256()
    for chunk in stream(loc):
        digest.update(chunk)
    return digest.hexdigest()


def copy_file(src: Location, dst: Location) -> str:
    """Copies one file between any two filesystems; returns its SHA-256."""
    digest = hashlib.sha256()
    fs, path = dst.filesystem()
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as out:
        for chunk in stream(src):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


# Where the AWS SDK (which pyarrow's S3 filesystem uses) finds credentials besides the metadata
# service of a cloud machine.
_AWS_CREDENTIAL_VARIABLES = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_PROFILE",),
    ("AWS_WEB_IDENTITY_TOKEN_FILE",),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
)


def _has_aws_credentials(loc: Location) -> bool:
    """Whether the S3 client will find credentials (or was told to go without)."""
    options = dict(parse_qsl(loc.query))
    if options.get("anonymous", "").lower() in ("true", "1") or "access_key" in options:
        return True
    if any(all(os.environ.get(v) for v in names) for names in _AWS_CREDENTIAL_VARIABLES):
        return True
    files = (
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
    )
    if any(Path(f).expanduser().is_file() for f in files):
        return True
    # A cloud machine's metadata service may hold a role; only its absence can be known.
    return os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"


def check_writable(loc: Location, field: str) -> None:
    """Writes and removes a small probe file at `loc`: a sweep finds out now, before Ray
    starts, that it could not keep its checkpoints or results there, not at its first one.

    Args:
        loc: The folder (local or object storage) to check.
        field: The spec key that named it, for the message.

    Raises:
        StorageError: naming `field`, the location (credentials masked) and the reason.
    """
    if loc.scheme == "s3" and not _has_aws_credentials(loc):
        raise StorageError(
            f"{field}: cannot write to {loc}: no AWS credentials found (set AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a credentials file, or add "
            "anonymous=true to the URI for a public bucket)"
        )
    try:
        if loc.is_local:
            # In the deepest folder that exists: checking creates nothing that stays.
            folder = Path(loc.path)
            while not folder.exists():
                folder = folder.parent
            if not folder.is_dir():
                raise NotADirectoryError(20, f"{folder} is a file, not a folder")
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".sweeps-write-probe-"):
                pass
        else:
            probe = loc.join(f".sweeps-write-probe-{socket.gethostname()}-{os.getpid()}")
            write_bytes(probe, b"probe")
            delete(probe)
    except (OSError, ValueError) as exc:  # pyarrow raises OSError, ArrowInvalid (ValueError)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StorageError(f"{field}: cannot write to {loc}: {reason}") from None


def check_storage(storage_path: str, promote_to: str | None) -> None:
    """Checks that a sweep's storage and its promotion destination (if any) can be written.

    Raises:
        StorageError: naming the spec key (`storage_path`, `promote.to`), the URI and why.
    """
    check_writable(Location.of(storage_path), "storage_path")
    if promote_to is not None:
        check_writable(Location.of(promote_to), "promote.to")
