"""Reading a job's data: tables (CSV, TSV, JSONL, Parquet) from local paths or pyarrow URIs
(`s3://...`), image folders (one subfolder per class) as tables of paths, Hub datasets where
reachable, and the built-in demo sets."""

from __future__ import annotations

from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from trainables.config import DataConfig
from trainables.demo_data import demo_splits
from trainables.errors import DataError

SPLITS = ("train", "validation", "test")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def data_file(uri: str, field: str) -> tuple[pa_fs.FileSystem, str]:
    """The filesystem and path of a data file: a local path or a pyarrow URI (`s3://...`).

    Raises:
        DataError: naming `field` when there is no file at `uri`.
    """
    fs, path = pa_fs.FileSystem.from_uri(uri) if "://" in uri else (pa_fs.LocalFileSystem(), uri)
    if fs.get_file_info(path).type != pa_fs.FileType.File:
        raise DataError(f"{field}: file not found: {uri}")
    return fs, path


def read_table(uri: str, fmt: str = "auto", field: str = "data.train") -> pa.Table:
    """Reads a CSV/TSV/JSONL/Parquet file from a local path or a pyarrow-supported URI."""
    if fmt == "auto":
        fmt = _SUFFIX_FORMATS.get(PurePosixPath(uri.split("?")[0]).suffix.lower(), "")
        if not fmt:
            raise DataError(
                f"{field}: cannot tell the format of {uri!r} from its suffix; set data.format "
                f"to one of csv, tsv, jsonl, parquet"
            )
    try:
        fs, path = data_file(uri, field)
        with fs.open_input_file(path) as f:
            if fmt == "parquet":
                return pq.read_table(f)
            if fmt == "jsonl":
                return pa_json.read_json(f)
            delimiter = "\t" if fmt == "tsv" else ","
            # GLUE-style TSVs are unquoted and contain bare quote characters.
            parse = pa_csv.ParseOptions(
                delimiter=delimiter, quote_char=False if fmt == "tsv" else '"'
            )
            return pa_csv.read_csv(f, parse_options=parse)
    except DataError:
        raise
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{field}: cannot read {uri!r} as {fmt}: {exc}") from None


def _read_hub(dataset_id: str, subset: str | None) -> dict[str, pa.Table]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "data.hub_dataset needs the `datasets` package: pip install 'finetune-sweeps[hub]'"
        ) from None
    try:
        loaded = datasets.load_dataset(dataset_id, subset)
    except Exception as exc:
        raise DataError(f"data.hub_dataset: cannot load {dataset_id!r}: {exc}") from None
    return {name: loaded[name].data.table for name in SPLITS if name in loaded}


def read_raw_splits(cfg: DataConfig) -> dict[str, pa.Table]:
    """The tables the config names, by split; splits it does not name are absent.

    An image folder becomes a table of `image` (absolute path or URI) and `label` (the
    class folder's name); a table's relative image paths become paths under its folder.
    """
    if cfg.builtin == "demo":
        return demo_splits()
    if cfg.builtin == "digits":
        from trainables.digits_data import digits_splits

        return digits_splits()
    if cfg.hub_dataset:
        return _read_hub(cfg.hub_dataset, cfg.hub_subset)
    assert cfg.train is not None
    tables = {}
    for name in SPLITS:
        uri = getattr(cfg, name)
        if not uri:
            continue
        field = f"data.{name}"
        try:
            folder = _is_folder(uri)
        except OSError as exc:  # object storage: no route, no bucket, no credentials
            raise DataError(f"{field}: cannot read {uri}: {exc}") from None
        if folder:
            from trainables.image_files import read_image_folder

            tables[name] = read_image_folder(uri, field)
            continue
        table = read_table(uri, cfg.format, field)
        if cfg.image_column:
            from trainables.image_files import anchor_paths

            table = anchor_paths(table, cfg.image_column, uri, field)
        tables[name] = table
    return tables


def _is_folder(uri: str) -> bool:
    """Whether `uri` (a local path or a pyarrow URI) is a folder."""
    try:
        filesystem, path = pa_fs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError):
        filesystem, path = pa_fs.LocalFileSystem(), uri
    try:
        return filesystem.get_file_info(path).type == pa_fs.FileType.Directory
    except OSError:
        return False
