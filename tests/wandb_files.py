"""Reads W&B's own run files (`run-*.wandb`) back: the records W&B would upload.

The file is W&B's header (`:W&B`, 7 bytes) followed by a LevelDB-style log of protobuf
`Record`s (W&B's own `wandb_internal_pb2`); this reader skips checksums.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 0 and length == 0:
            continue
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        elif kind in (_FIRST, _MIDDLE):
            pending += chunk


@dataclass
class OfflineRun:
    """What one run file holds."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def read_run(path: Path) -> OfflineRun:
    run = OfflineRun(path)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.group, run.job_type = (
                r.run_id,
                r.display_name,
                r.run_group,
                r.job_type,
            )
            for item in r.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item, json.loads(item.value_json))
            row["_step"] = (
                record.history.step.num if record.history.HasField("step") else row.get("_step")
            )
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(run.summary, item, json.loads(item.value_json))
    return run


def _put(target: dict[str, Any], item: Any, value: Any) -> None:
    """Store a record item; W&B writes media (tables) as `nested_key` paths, kept nested here."""
    *parents, last = [item.key] if item.key else list(item.nested_key)
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value


def offline_runs(folder: Path) -> list[OfflineRun]:
    """Every run file under a W&B directory (`<dir>/wandb/offline-run-*/run-*.wandb`)."""
    return [read_run(p) for p in sorted(folder.rglob("run-*.wandb"))]
