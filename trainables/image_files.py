"""Image inputs: folders in the `ImageFolder` layout, path columns, and decoding.

Everything goes through pyarrow filesystems, so a folder or a table's image paths may be local
or on object storage (`s3://bucket/images?endpoint_override=...`). An image reference is
either encoded bytes or a path/URI; `open_image` decodes either to RGB.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pa_fs

from trainables.errors import DataError

#: Suffixes read as images in an image folder (what PIL decodes).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def _filesystem(uri: str) -> tuple[pa_fs.FileSystem, str, str]:
    """The filesystem of `uri`, the path in it, and how to rebuild a URI from a path."""
    if "://" not in uri:
        return pa_fs.LocalFileSystem(), uri, ""
    filesystem, path = pa_fs.FileSystem.from_uri(uri)
    scheme, rest = uri.split("://", 1)
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    return filesystem, path, f"{scheme}://{{}}{query}"


def read_image_folder(uri: str, field: str) -> pa.Table:
    """A table of `image` (path or URI of every image) and `label` (its class folder's name).

    Raises:
        DataError: naming `field` and the folder when it has no class folders or a class
            folder has no images.
    """
    filesystem, root, template = _filesystem(uri)
    try:
        entries = filesystem.get_file_info(pa_fs.FileSelector(root, recursive=False))
    except OSError as exc:
        raise DataError(f"{field}: cannot list the image folder {uri}: {exc}") from None
    classes = sorted(e.path for e in entries if e.type == pa_fs.FileType.Directory)
    if not classes:
        raise DataError(
            f"{field}: {uri} has no class folders; an image folder holds one subfolder of "
            "images per class (the torchvision ImageFolder layout)"
        )
    images, labels = [], []
    for folder in classes:
        found = filesystem.get_file_info(pa_fs.FileSelector(folder, recursive=True))
        files = sorted(
            f.path
            for f in found
            if f.type == pa_fs.FileType.File
            and PurePosixPath(f.path).suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(f"{field}: the class folder {folder} has no images")
        images += [template.format(f) if template else f for f in files]
        labels += [PurePosixPath(folder).name] * len(files)
    return pa.table({"image": images, "label": labels})


def anchor_paths(table: pa.Table, column: str, table_uri: str, field: str) -> pa.Table:
    """`table` with relative image paths in `column` made relative to the table's folder."""
    if column not in table.column_names:
        raise DataError(
            f"data.image_column: column {column!r} not in {field} ({table_uri}); its columns "
            f"are {table.column_names}"
        )
    values = table.column(column)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        return table  # encoded bytes
    _, path, template = _filesystem(table_uri)
    base = PurePosixPath(path).parent

    def anchored(value: str | None) -> str | None:
        if value is None or "://" in value or value.startswith("/"):
            return value
        joined = str(base / value)
        return template.format(joined) if template else joined

    fixed = [anchored(v) for v in values.to_pylist()]
    return table.set_column(table.column_names.index(column), column, pa.array(fixed))


def read_bytes(ref: str | bytes) -> bytes:
    """The encoded bytes of an image reference."""
    if isinstance(ref, bytes):
        return ref
    filesystem, path, _ = _filesystem(ref)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def open_image(ref: Any, where: str) -> Any:
    """The image `ref` (bytes or a path/URI) decoded as an RGB PIL image.

    Raises:
        DataError: naming `where` (the field and row) and the file when it does not decode.
    """
    from PIL import Image, UnidentifiedImageError

    shown = ref if isinstance(ref, str) else f"{len(ref)} bytes"
    if not isinstance(ref, str | bytes):
        raise DataError(f"{where}: an image must be a path or encoded bytes, got {type(ref)}")
    try:
        image = Image.open(io.BytesIO(read_bytes(ref)))
        return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{where}: cannot read the image {shown}: {exc}") from None
