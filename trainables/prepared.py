"""Text data tokenized once per sweep, stored as Arrow, read by every trial and rank.

Without it every rank of every trial reads the whole dataset and tokenizes every split,
holding all rows as Python objects: seconds per rank per trial on SST-2, minutes and gigabytes
on a million rows. The sweep's driver, which reads the data in preflight anyway, tokenizes it
once into the sweep's storage (local or S3):

    <folder>/<key>/train.arrow, validation.arrow[, test.arrow]    Arrow IPC files: one
                                                                  list<int32> column per model
                                                                  input, `labels` (int64 ids,
                                                                  or fixed-size lists of
                                                                  float32: regression targets,
                                                                  multi-hot rows)
    <folder>/<key>/prepared.json                                  label names, rows per split,
                                                                  the key (written last)

The key is a hash of what the tokens depend on: the task (how labels are read), the data
section, each data file as it is now
(size and modification time), the tokenizer (its model name or folder, a folder's files as they
are now) and `max_length`. A trial whose own job gives another key (a searched `max_length`, an
edited file) tokenizes for itself, as before. A rank memory-maps the files (from S3, a local
copy per node first), so what it holds does not grow with the rows it never batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pa_fs
import pyarrow.ipc as ipc

from trainables.config import FinetuneConfig
from trainables.data import Ragged, TokenizedSplit

META = "prepared.json"
_FORMAT = 2
#: Tasks whose rows are a text (or pair) and a label array: what this module prepares.
PREPARED_TASKS = ("text", "regression", "multi_label")


def _filesystem(uri: str) -> tuple[pa_fs.FileSystem, str]:
    if "://" in uri:
        return pa_fs.FileSystem.from_uri(uri)
    return pa_fs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def data_key(cfg: FinetuneConfig) -> str | None:
    """The key of `cfg`'s tokens, or None for data that cannot be keyed (a hub dataset, a task
    not in `PREPARED_TASKS`)."""
    data = cfg.data
    if cfg.task not in PREPARED_TASKS or data.hub_dataset:
        return None
    digest = hashlib.sha256()
    what = {
        "format": _FORMAT,
        "task": cfg.task,
        "data": data.model_dump(mode="json"),
        "tokenizer": cfg.model.name_or_path,
    }
    digest.update(json.dumps(what, sort_keys=True).encode())
    sources = [u for u in (data.train, data.validation, data.test) if u]
    folder = Path(cfg.model.name_or_path)
    if folder.is_dir():  # a local model folder: its tokenizer files may change under the name
        sources += [str(p) for p in sorted(folder.iterdir()) if p.is_file()]
    for uri in sources:
        fs, path = _filesystem(uri)
        info = fs.get_file_info(path)
        digest.update(f"{uri}|{info.size}|{info.mtime_ns}".encode())
    return digest.hexdigest()[:24]


def prepare_tokens(cfg: FinetuneConfig, folder: str) -> str | None:
    """Tokenizes `cfg`'s splits into `folder/<key>` unless they are there already; returns that
    location (a path or URI), or None when the data cannot be prepared ahead (`data_key`)."""
    from trainables.data import build_dataset, tokenize_split
    from trainables.models import load_tokenizer

    key = data_key(cfg)
    if key is None:
        return None
    base, _, options = folder.partition("?")  # an S3 URI's options (endpoint, region) last
    location = f"{base.rstrip('/')}/{key}" + (f"?{options}" if options else "")
    fs, path = _filesystem(location)
    if fs.get_file_info(f"{path}/{META}").type == pa_fs.FileType.File:
        return location
    dataset = build_dataset(cfg.data, task=cfg.task)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    fs.create_dir(path, recursive=True)
    rows = {}
    for name, split in dataset.splits.items():
        tokens = tokenize_split(split, tokenizer, cfg.data.max_length)
        _write_split(fs, f"{path}/{name}.arrow", tokens)
        rows[name] = len(tokens)
    meta = {"key": key, "label_names": list(dataset.label_names), "rows": rows}
    # Last: a folder without it is one whose writer died, and is written again.
    with fs.open_output_stream(f"{path}/{META}") as out:
        out.write(json.dumps(meta).encode())
    return location


def _write_split(fs: pa_fs.FileSystem, path: str, tokens: TokenizedSplit) -> None:
    columns = {
        name: pa.ListArray.from_arrays(
            pa.array(column.offsets.astype(np.int32)), pa.array(column.values)
        )
        for name, column in tokens.features.items()
    }
    labels = tokens.labels
    if labels.ndim == 2:  # regression targets or multi-hot rows
        flat = pa.array(labels.astype(np.float32).reshape(-1))
        columns["labels"] = pa.FixedSizeListArray.from_arrays(flat, labels.shape[1])
    else:
        columns["labels"] = pa.array(labels.astype(np.int64))
    table = pa.table(columns)
    with fs.open_output_stream(path) as out, ipc.new_file(out, table.schema) as writer:
        writer.write_table(table)


def load_tokens(
    cfg: FinetuneConfig, location: str
) -> tuple[dict[str, TokenizedSplit], tuple[str, ...]] | None:
    """The tokens prepared at `location` (what `prepare_tokens` returned), memory-mapped, with
    the label names; None when there are none or they were prepared for another key than
    `cfg`'s own."""
    fs, path = _filesystem(location)
    try:
        with fs.open_input_stream(f"{path}/{META}") as handle:
            meta = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if meta.get("key") != data_key(cfg):
        return None
    local = _local_copy(fs, path, meta["key"], list(meta["rows"]))
    splits = {name: _read_split(local / f"{name}.arrow") for name in meta["rows"]}
    return splits, tuple(meta["label_names"])


def _local_copy(fs: pa_fs.FileSystem, path: str, key: str, splits: list[str]) -> Path:
    """The folder itself when local; else a copy in the node's temp folder, made once per node
    (renamed into place whole, so a rank never maps a file another rank is still copying)."""
    if isinstance(fs, pa_fs.LocalFileSystem):
        return Path(path)
    target = Path(tempfile.gettempdir()) / "finetune-sweeps-tokens" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent))
    for name in splits:
        pa_fs.copy_files(
            f"{path}/{name}.arrow",
            str(staging / f"{name}.arrow"),
            source_filesystem=fs,
            destination_filesystem=pa_fs.LocalFileSystem(),
        )
    with contextlib.suppress(OSError):  # another rank renamed its copy first
        os.rename(staging, target)
    return target


def _read_split(path: Path) -> TokenizedSplit:
    table = ipc.open_file(pa.memory_map(str(path))).read_all()
    features: dict[str, Ragged] = {}
    for name in table.column_names:
        if name == "labels":
            continue
        column: Any = table.column(name).combine_chunks()
        # Zero-copy views of the mapped file.
        offsets = column.offsets.to_numpy().astype(np.int64)
        features[name] = Ragged(column.values.to_numpy(), offsets)
    label_column: Any = table.column("labels").combine_chunks()
    if pa.types.is_fixed_size_list(label_column.type):
        width = label_column.type.list_size
        labels = label_column.flatten().to_numpy().reshape(len(label_column), width)
    else:
        labels = label_column.to_numpy()
    return TokenizedSplit(features, labels)
