"""Chaos: the sweep's S3 server is stopped for 30 s mid-sweep (SIGSTOP: it accepts connections
and answers nothing, as a server that has gone away behind a load balancer does), then
continued.

The sweep finishes; every checkpoint folder in the bucket is either registered by Train and
complete (its size and SHA-256 lists match) or absent; promotion and `sweeps verify` pass.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pa_fs
import pytest
import ray
import ray.train

from sweeps import cli
from sweeps.results.results_file import read_results
from tests.chaos.killer import SNAPSHOT
from tests.chaos.sweep import fifo_sweep, sweeps_command, write_spec
from trainables.checkpointing import damage

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

BUCKET = "outage"
STEPS, EVERY = 30, 10
OUTAGE_S = 30.0


@pytest.fixture
def moto_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """moto's S3 server in a process of its own (a thread cannot be stopped alone)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "moto did not start"
            time.sleep(0.2)
    bucket(endpoint).create_dir(BUCKET)
    try:
        yield server, endpoint
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
        log.close()


def bucket(endpoint: str) -> pa_fs.S3FileSystem:
    return pa_fs.S3FileSystem(
        endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True
    )


def uri(endpoint: str, prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def checkpoint_folders(s3: pa_fs.S3FileSystem, prefix: str) -> dict[str, list[str]]:
    """Each trial's checkpoint folders in the bucket, by trial folder."""
    found: dict[str, list[str]] = {}
    selector = pa_fs.FileSelector(prefix, recursive=True, allow_not_found=True)
    for info in s3.get_file_info(selector):
        parts = info.path.split("/")
        if info.type == pa_fs.FileType.Directory and parts[-1].startswith("checkpoint_"):
            found.setdefault("/".join(parts[:-1]), []).append(parts[-1])
    return found


@pytest.mark.timeout(900)
def test_a_stopped_s3_server_for_30s_loses_nothing_and_the_sweep_finishes_and_promotes(
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
    moto_process: tuple[subprocess.Popen, str],
) -> None:
    server, endpoint = moto_process
    s3 = bucket(endpoint)
    storage = uri(endpoint, "sweeps")
    raw = fifo_sweep(tiny_model_dir, separable_files, storage, "outage", 2, STEPS, EVERY)
    raw["promote"] = {"to": uri(endpoint, "models")}
    command, env = sweeps_command("run", str(write_spec(tmp_path, raw)))
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    # Stopped once the first trial has a checkpoint in the bucket: mid-trial, mid-sweep.
    deadline = time.monotonic() + 300
    while not checkpoint_folders(s3, f"{BUCKET}/sweeps/outage/train"):
        assert time.monotonic() < deadline and driver.poll() is None, "no checkpoint came"
        time.sleep(0.5)
    server.send_signal(signal.SIGSTOP)
    time.sleep(OUTAGE_S)
    mid_sweep = driver.poll() is None
    server.send_signal(signal.SIGCONT)
    output = driver.communicate(timeout=600)[0].decode()

    assert mid_sweep, output[-4000:]  # the outage fell inside the sweep
    assert driver.returncode == 0, output[-4000:]
    rows = read_results(uri(endpoint, "sweeps/outage/results.parquet"))
    assert {r["trial_status"] for r in rows} == {"TERMINATED"}
    assert len({r["trial_id"] for r in rows}) == 2
    folders = checkpoint_folders(s3, f"{BUCKET}/sweeps/outage/train")
    assert len(folders) == 2
    for trial, names in folders.items():
        with s3.open_input_stream(f"{trial}/{SNAPSHOT}") as handle:
            snapshot = json.loads(handle.read())
        kept = {r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]}
        assert set(names) == kept, trial  # nothing half written left unregistered
        for name in names:
            folder = ray.train.Checkpoint(f"{trial}/{name}", filesystem=s3)
            assert damage(folder) == [], f"{trial}/{name}"
    # `sweeps verify` as its command line runs it (in this process: the sweep was the fault's).
    assert cli.main(["verify", uri(endpoint, "models/outage")]) == 0
