"""Finds secrets in files as their readers would see them, not only as their bytes lie on disk.

Each file is searched as stored and, recursively, as decoded: Parquet through pyarrow (every
column's values, whatever the file's compression), W&B run files (`.wandb`) record by record
(W&B splits a record across 32 KiB blocks, so a secret may straddle a block header on disk),
gzip, zstd, LZ4 frames, bz2 and xz streams, and zip archives (`torch.save` files) member by
member. A secret is looked for in plain text and in the encodings a writer may put it in: hex
(Tune stores each trial's state as hex-encoded pickles in its experiment state), base64 (HTTP
Basic auth headers in a debug log) and UTF-16.
"""

from __future__ import annotations

import base64
import bz2
import io
import lzma
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

# Magic bytes of the compressed streams pyarrow decodes (its codecs, no extra package).
_STREAMS = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4"}
_DEPTH = 4  # containers inside containers, at most
_WANDB_BLOCK = 32768


def needles(secret: str) -> dict[str, bytes]:
    """The byte strings that betray `secret`, by encoding.

    Base64 depends on where the secret starts modulo 3 bytes: each alignment's characters that
    come from the secret's bytes alone are a needle (the first and last group, mixed with
    neighbouring bytes, are left out)."""
    raw = secret.encode()
    found = {
        "plain": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "utf-16": secret.encode("utf-16-le"),
    }
    for shift in range(3):
        whole = (shift + len(raw)) // 3 * 4
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            found[f"{name}+{shift}"] = encode(b"\0" * shift + raw)[4 if shift else 0 : whole]
    return found


def views(data: bytes, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """(how, bytes): the data as stored ("stored"), then every decoded form inside it, named by
    the decoders that led to it ("parquet", "zip:training_state.pt/stored", ...).

    Raises:
        ValueError: data that looks like a container (its magic bytes) but does not decode: a
            scan that cannot read a file must not pass it as clean.
    """
    yield "stored", data
    if depth >= _DEPTH:
        return
    for kind, inner in _unpack(data):
        for how, view in views(inner, depth + 1):
            yield (kind if how == "stored" else f"{kind}/{how}"), view


def _unpack(data: bytes) -> Iterator[tuple[str, bytes]]:
    try:
        if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
            yield from _parquet(data)
        elif data[:4] == b":W&B":
            yield "wandb-records", _wandb_records(data)
        elif data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    yield f"zip:{name}", archive.read(name)
        elif data[:3] == b"BZh":
            yield "bz2", bz2.decompress(data)
        elif data[:6] == b"\xfd7zXZ\x00":
            yield "xz", lzma.decompress(data)
        else:
            for magic, codec in _STREAMS.items():
                if data.startswith(magic):
                    stream = pa.CompressedInputStream(pa.BufferReader(data), codec)
                    yield codec, stream.read()
    except Exception as exc:
        raise ValueError(f"cannot decode ({exc!r})") from exc


def _parquet(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Every value of every column, decoded: strings joined into one text, each binary value on
    its own (it may be a container itself), and the schema's metadata."""
    table = pq.read_table(pa.BufferReader(data))
    texts: list[str] = [str(table.schema.metadata or {})]
    binaries: list[bytes] = []
    for column in table.columns:
        for value in column.to_pylist():
            _collect(value, texts, binaries)
    yield "parquet", "\n".join(texts).encode()
    for value in binaries:
        yield "parquet-binary", value


def _collect(value: object, texts: list[str], binaries: list[bytes]) -> None:
    if isinstance(value, bytes):
        binaries.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            texts.append(str(key))
            _collect(item, texts, binaries)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, texts, binaries)
    elif value is not None:
        texts.append(str(value))


def _wandb_records(data: bytes) -> bytes:
    """The run file's records, each whole (its chunks joined across blocks), one after another:
    protobuf keeps strings as they are, so a secret in any field is a substring.

    The framing is `tests/wandb_files.py`'s (W&B's header, then a LevelDB-style log); each
    record is parsed as W&B's `Record`, so a format change (compressed records, say) fails the
    scan instead of hiding what it holds."""
    from wandb.proto import wandb_internal_pb2 as pb

    whole: list[bytes] = []
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _WANDB_BLOCK - pos % _WANDB_BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL, LAST
            pb.Record().ParseFromString(pending + chunk)
            whole.append(pending + chunk)
            pending = b""
        elif kind in (2, 3):  # FIRST, MIDDLE
            pending += chunk
    return b"\n".join(whole)


@dataclass(frozen=True)
class Leak:
    """A secret found: its name, the file, and how it was found there."""

    name: str
    where: str
    how: str  # the decoding chain and the encoding, e.g. "parquet:plain"


@dataclass
class Places:
    """Everywhere a scan looks.

    Attributes:
        folders: Every file below each.
        recent: Files below each (or the file itself) changed at or after `since`.
        since: A wall time (seconds).
        s3: A filesystem and the `bucket/prefix` below which every object is read.
    """

    folders: list[Path]
    recent: list[Path] = field(default_factory=list)
    since: float = 0.0
    s3: tuple[pa_fs.FileSystem, str] | None = None

    def files(self) -> Iterator[tuple[str, bytes]]:
        """(where, content) of every file in the places, each once."""
        paths: dict[str, Path] = {}
        for folder in self.folders:
            for path in _walk(folder):
                paths.setdefault(str(path), path)
        for place in self.recent:
            for path in _walk(place):
                try:
                    if path.stat().st_mtime >= self.since:
                        paths.setdefault(str(path), path)
                except FileNotFoundError:
                    continue
        for where, path in sorted(paths.items()):
            try:
                yield where, path.read_bytes()
            except FileNotFoundError:  # a temporary file gone since the walk
                continue
        if self.s3 is not None:
            fs, prefix = self.s3
            for info in fs.get_file_info(
                pa_fs.FileSelector(prefix, allow_not_found=True, recursive=True)
            ):
                if info.type == pa_fs.FileType.File:
                    with fs.open_input_stream(info.path) as handle:
                        yield f"s3://{info.path}", handle.read()


def _walk(place: Path) -> Iterator[Path]:
    """Regular files below `place` (or `place` itself), not following links: a link's target
    is scanned where it lives if it is in a place at all."""
    if place.is_file() and not place.is_symlink():
        yield place
        return
    for root, _dirs, names in os.walk(place):
        for name in names:
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                yield path


@dataclass
class Scan:
    """The outcome of `scan`: what was found, what was read, what could not be decoded."""

    leaks: set[Leak] = field(default_factory=set)
    read: list[str] = field(default_factory=list)
    undecodable: dict[str, str] = field(default_factory=dict)

    def where(self) -> set[tuple[str, str]]:
        """(secret's name, file) of every leak."""
        return {(leak.name, leak.where) for leak in self.leaks}


def scan_bytes(where: str, data: bytes, secrets: dict[str, str], into: Scan) -> None:
    """Adds every secret found in `data` (named `where`) to `into`."""
    wanted = {name: needles(secret) for name, secret in secrets.items()}
    try:
        for how, view in views(data):
            for name, forms in wanted.items():
                for encoding, needle in forms.items():
                    if needle in view:
                        into.leaks.add(Leak(name, where, f"{how}:{encoding}"))
    except ValueError as exc:
        into.undecodable[where] = str(exc)


def scan(places: Places, secrets: dict[str, str]) -> Scan:
    """Every file of `places`, searched for every secret (name -> value) in every form."""
    found = Scan()
    for where, data in places.files():
        found.read.append(where)
        scan_bytes(where, data, secrets, found)
    return found
