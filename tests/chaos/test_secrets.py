"""Chaos: secrets in the environment of `sweeps run` land in no file anything writes.

The sweep stores on S3 (a moto server), promotes there, and streams to an online W&B (a local
server, `tests/wandb_server.py`), with sentinel credentials in its environment. The scanner
first finds a planted leak in every place it searches (the positive control), then searches
them all after the sweep: the storage bucket, the test's folder (spec, W&B's directory), the
running Ray session's directory, and every file under `~/.cache` and `~/.config` written
during the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pa_fs
import pytest
import ray
import yaml

from tests.sweeps.test_promotion import BUCKET, s3_endpoint, s3_uri  # noqa: F401  (moto S3)
from tests.sweeps.test_sweep_e2e import tiny_spec
from tests.wandb_server import FakeWandb

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

SENTINELS = {
    "WANDB_API_KEY": "wandbsentinel" + "7" * 27,
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000KEY1",
    "AWS_SECRET_ACCESS_KEY": "awssecretsentinel/0000000000000000000000",
}


@dataclass(frozen=True)
class Places:
    """Everywhere the scan looks."""

    folders: list[Path]  # every file below
    recent: list[Path]  # files below changed since `since`
    since: float
    s3: pa_fs.FileSystem
    prefix: str  # bucket/prefix: every object below

    def files(self) -> Iterator[tuple[str, bytes]]:
        for folder in self.folders:
            for path in folder.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    yield str(path), path.read_bytes()
        for place in self.recent:
            for path in place.rglob("*") if place.is_dir() else [place]:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= self.since:
                    yield str(path), path.read_bytes()
        found = self.s3.get_file_info(pa_fs.FileSelector(self.prefix, recursive=True))
        for info in found:
            if info.type == pa_fs.FileType.File:
                with self.s3.open_input_stream(info.path) as handle:
                    yield f"s3://{info.path}", handle.read()


def leaks(places: Places) -> set[tuple[str, str]]:
    """(secret's name, file) for every secret found in every file of `places`."""
    return {
        (name, where)
        for where, data in places.files()
        for name, secret in SENTINELS.items()
        if secret.encode() in data
    }


def session_dir() -> Path:
    """The running Ray session's directory, as the session itself reports it."""
    return Path(ray._private.worker._global_node.get_session_dir_path())


@pytest.mark.timeout(600)
def test_secrets_in_the_environment_appear_in_no_file_of_an_s3_online_sweep(
    s3_endpoint: str,  # noqa: F811
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
) -> None:
    home = Path.home()
    places = Places(
        folders=[tmp_path, session_dir()],
        recent=[home / ".cache", home / ".config", home / ".netrc"],
        since=time.time() - 1,
        s3=pa_fs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1"),
        prefix=f"{BUCKET}/secrets",
    )
    # The control: a planted leak in each kind of place is found, and named by its file.
    planted = {
        tmp_path / "planted.txt": "WANDB_API_KEY",
        session_dir() / "logs" / "planted.log": "AWS_SECRET_ACCESS_KEY",
        home / ".cache" / "sweeps-planted": "AWS_ACCESS_KEY_ID",
    }
    for path, name in planted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"x={SENTINELS[name]}\n")
    with places.s3.open_output_stream(f"{places.prefix}/planted") as out:
        out.write(SENTINELS["WANDB_API_KEY"].encode())
    want = {(name, str(path)) for path, name in planted.items()}
    want.add(("WANDB_API_KEY", f"s3://{places.prefix}/planted"))
    assert leaks(places) == want
    for path in planted:
        path.unlink()
    places.s3.delete_file(f"{places.prefix}/planted")

    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=1)
    raw["name"] = "secrets"
    raw["storage_path"] = s3_uri(s3_endpoint, "secrets/sweeps")
    raw["promote"] = {"to": s3_uri(s3_endpoint, "secrets/models")}
    raw["wandb"] = {"mode": "online", "project": "p", "dir": str(tmp_path / "wb")}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    with FakeWandb() as server:
        env = {
            **os.environ,
            **SENTINELS,
            "WANDB_BASE_URL": server.url,
            # The command joins the session's Ray runtime: a second local instance on one
            # machine breaks Ray's state-API autodetection.
            "RAY_ADDRESS": str(ray.get_runtime_context().gcs_address),
        }
        out = subprocess.run(
            [sys.executable, "-m", "sweeps", "run", str(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert server.of("upsertBucket"), "the runs did not go online"
    written = {where for where, _ in places.files()}
    assert any(w.endswith(".wandb") for w in written)
    assert any(w.endswith("manifest.json") and w.startswith("s3://") for w in written)
    for secret in SENTINELS.values():
        assert secret not in out.stdout + out.stderr
    assert leaks(places) == set()
