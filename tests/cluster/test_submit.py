"""A real two-node Ray cluster on loopback (`ray start --head`, then `ray start --address`),
token auth on, and sweeps submitted to it with `cluster/submit.sh` (the real `ray job submit`).

The cluster is torn down by process group whatever happens, so the session's own Ray runtime
(other tests) is left alone."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sweeps.results.queries import SweepResults
from sweeps.spec import parse_spec
from sweeps.store.promotion import verify
from tests.sweeps.test_sweep_e2e import tiny_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    address: str  # the job API
    env: dict[str, str]  # what a user with the cluster's token has
    temp_dir: Path


def node_ports() -> list[str]:
    # Two nodes on one machine (and the session's own Ray) must not share an agent port.
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]


def wait_for_jobs_api(cluster: Cluster, nodes: int, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a `ray start` exited"
        listed = subprocess.run(
            [RAY, "list", "nodes", "--address", cluster.address, "--format", "json"],
            env=cluster.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.returncode == 0 and "[" in listed.stdout:
            # The CLI may print a notice before the JSON.
            nodes_json = listed.stdout[listed.stdout.index("[") :]
            alive = [n for n in json.loads(nodes_json) if n.get("state") == "ALIVE"]
            if len(alive) >= nodes:
                return
        time.sleep(2)
    raise TimeoutError("the cluster did not come up in 120 s")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head (1 CPU) and a second node (1 CPU) on 127.0.0.1; the dashboard on 127.0.0.1 only."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: socket paths
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ADDRESS": "",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("RAY_AUTH_TOKEN", None)
    gcs, dashboard = free_port(), free_port()
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = [
        RAY,
        "start",
        "--head",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
        *common,
        *node_ports(),
    ]
    # Its own temp dir: two nodes on one machine sharing one would share (and delete) each
    # other's runtime env folders, the job's working dir among them.
    worker = [
        RAY,
        "start",
        f"--address=127.0.0.1:{gcs}",
        f"--temp-dir={temp_dir / 'w'}",
        *common,
        *node_ports(),
    ]
    logs = temp_dir / "start.log"
    procs: list[subprocess.Popen] = []
    info = Cluster(f"http://127.0.0.1:{dashboard}", env, temp_dir)
    try:
        with logs.open("a") as out:
            procs.append(
                subprocess.Popen(head, env=env, stdout=out, stderr=out, start_new_session=True)
            )
            wait_for_jobs_api(info, 1, procs)
            procs.append(
                subprocess.Popen(worker, env=env, stdout=out, stderr=out, start_new_session=True)
            )
            wait_for_jobs_api(info, 2, procs)
        yield info
    finally:
        for proc in reversed(procs):
            with _quietly():
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with _quietly():
                    os.killpg(proc.pid, signal.SIGKILL)
        _kill_leftovers(str(temp_dir), gcs)
        shutil.rmtree(temp_dir, ignore_errors=True)


class _quietly:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError or exc[0] is PermissionError


def _kill_leftovers(temp_dir: str, gcs_port: int) -> None:
    """Ray processes of this cluster that left the process group (none expected)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline or f"127.0.0.1:{gcs_port}" in cmdline:
            with _quietly():
                os.kill(int(proc.name), signal.SIGKILL)


def submit(
    cluster: Cluster, spec: Path, job_id: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(ROOT / "cluster" / "submit.sh"),
            str(spec),
            "--address",
            cluster.address,
            "--submission-id",
            job_id,
        ],
        cwd=ROOT,
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def job_logs(cluster: Cluster, job_id: str) -> str:
    return subprocess.run(
        [RAY, "job", "logs", "--address", cluster.address, job_id],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def write_spec(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.timeout(1200)
def test_a_submitted_sweep_succeeds_and_a_bad_spec_fails_with_its_message(
    cluster: Cluster, tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path / "storage")
    raw["name"] = "on-cluster"
    raw["job"]["training"] |= {"max_steps": 4}
    raw["search"] = {
        "method": "grid",
        "metric": "val_accuracy",
        "mode": "max",
        "space": {"optimizer.lr": {"grid": [1e-3, 3e-3]}},
    }
    raw["scheduler"] = {"name": "fifo"}
    raw["promote"] = {"to": str(tmp_path / "models")}
    done = submit(cluster, write_spec(tmp_path, raw), "good-sweep")
    logs = job_logs(cluster, "good-sweep")
    assert done.returncode == 0, done.stdout + done.stderr + logs
    assert "job good-sweep: SUCCEEDED" in done.stdout

    spec = parse_spec(raw)
    rows = SweepResults.of(spec).table()
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows), rows
    assert verify(str(tmp_path / "models" / "on-cluster"))["sweep"] == "on-cluster"
    assert "promoted trial" in logs

    bad = {**raw, "name": "bad-spec", "job": {**raw["job"], "trainig": {"epochs": 1}}}
    failed = submit(cluster, write_spec(tmp_path, bad), "bad-spec")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "job bad-spec: FAILED" in failed.stdout
    assert "trainig: unknown field" in job_logs(cluster, "bad-spec")


def test_a_submission_without_the_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    spec = ROOT / "sweeps" / "examples" / "laptop.yaml"
    no_token = {**cluster.env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "none")}
    (tmp_path / "none").write_text("not-the-cluster-token")
    refused = submit(cluster, spec, "no-token", env=no_token)
    assert refused.returncode != 0
    assert "auth" in (refused.stdout + refused.stderr).lower()
    listed = subprocess.run(
        [RAY, "job", "list", "--address", cluster.address],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "no-token" not in listed.stdout
