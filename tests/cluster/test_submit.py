"""A real Ray cluster on loopback, started and submitted to as docs/clusters.md's "Try it on this
machine" says: `ray get-auth-token --generate`, `ray start --head --dashboard-host=127.0.0.1`
(token auth on: the token file is there), then `RAY_ADDRESS=http://127.0.0.1:8265
cluster/submit.sh SPEC --set ...` (the real `ray job submit`) with no RAY_AUTH_MODE in the
environment, as a user's shell has none.

The user's home is a temporary folder (the token lives in its `.ray/auth_token`). `ray start`
gets, beyond the documented flags, its own ports and temp dir only so that it can run beside the
session's own Ray runtime (other tests); the cluster is torn down by process group whatever
happens."""

from __future__ import annotations

import json
import os
import re
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
from sweeps.store.model_versions import verify
from tests.sweeps.running.test_sweep_e2e import tiny_spec

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
    env: dict[str, str]  # a user's shell: HOME holds the token, RAY_ADDRESS names the job API
    temp_dir: Path

    @property
    def cli_env(self) -> dict[str, str]:
        """The shell of the docs' other Ray CLI commands (`ray job logs`, `ray list`), which
        need `export RAY_AUTH_MODE=token`, as docs/clusters.md says."""
        return {**self.env, "RAY_AUTH_MODE": "token"}


def node_ports() -> list[str]:
    # Two Ray runtimes on one machine (this one and the session's) must not share a port.
    return [
        f"--port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]


def wait_for_jobs_api(cluster: Cluster, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "`ray start --head` exited"
        listed = subprocess.run(
            [RAY, "list", "nodes", "--address", cluster.address, "--format", "json"],
            env=cluster.cli_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.returncode == 0 and "[" in listed.stdout:
            # The CLI may print a notice before the JSON.
            nodes_json = listed.stdout[listed.stdout.index("[") :]
            if any(n.get("state") == "ALIVE" for n in json.loads(nodes_json)):
                return
        time.sleep(2)
    raise TimeoutError("the cluster did not come up in 120 s")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One head node (2 CPUs) on 127.0.0.1, started as docs/clusters.md says."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: socket paths
    home = temp_dir / "home"
    home.mkdir()
    dashboard = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") or k == "RAY_TMPDIR"}
    env |= {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}",
    }
    generated = subprocess.run(
        ["ray", "get-auth-token", "--generate"], env=env, capture_output=True, text=True
    )
    assert generated.returncode == 0, generated.stderr
    assert (home / ".ray" / "auth_token").is_file()
    start_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}  # a new cluster
    head = [
        "ray",
        "start",
        "--head",
        "--dashboard-host=127.0.0.1",
        # Test-only: in the foreground (torn down by process group), sized, beside the session.
        "--block",
        f"--dashboard-port={dashboard}",
        f"--temp-dir={temp_dir / 'ray'}",
        "--num-cpus=2",
        "--disable-usage-stats",
        *node_ports(),
    ]
    logs = temp_dir / "start.log"
    info = Cluster(env["RAY_ADDRESS"], env, temp_dir)
    proc: subprocess.Popen | None = None
    try:
        with logs.open("a") as out:
            proc = subprocess.Popen(
                head, env=start_env, stdout=out, stderr=out, start_new_session=True
            )
            wait_for_jobs_api(info, proc)
        yield info
    finally:
        if proc is not None:
            # `ray start --block` takes over 30 s to stop gracefully; no test needs that.
            with _quietly():
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        _kill_leftovers(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


class _quietly:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError or exc[0] is PermissionError


def _kill_leftovers(temp_dir: str) -> None:
    """Ray processes of this cluster that left the process group (none expected)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            with _quietly():
                os.kill(int(proc.name), signal.SIGKILL)


def submit(
    cluster: Cluster, spec: Path, *sweep_args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], str]:
    """`cluster/submit.sh SPEC [--set ...]` as docs/clusters.md runs it; its result, the job id."""
    done = subprocess.run(
        ["cluster/submit.sh", str(spec), *sweep_args],
        cwd=ROOT,
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    found = re.search(r"^job (\S+): [A-Z]+$", done.stdout, re.M)
    return done, found.group(1) if found else ""


def job_logs(cluster: Cluster, job_id: str) -> str:
    return subprocess.run(
        [RAY, "job", "logs", job_id],
        env=cluster.cli_env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def write_spec(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.timeout(1200)
def test_a_submitted_sweep_succeeds_with_its_override_and_a_bad_spec_fails_with_its_message(
    cluster: Cluster, tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path / "storage")
    raw["name"] = "on-cluster"
    raw["job"]["training"] |= {"max_steps": 4}
    raw["search"] = {
        "method": "random",
        "metric": "val_accuracy",
        "mode": "max",
        "num_samples": 1,  # the submission's --set asks for 2
        "space": {"optimizer.lr": {"loguniform": [1e-3, 3e-3]}},
    }
    raw["scheduler"] = {"name": "fifo"}
    raw["promote"] = {"to": str(tmp_path / "models")}
    done, job_id = submit(cluster, write_spec(tmp_path, raw), "--set", "search.num_samples=2")
    logs = job_logs(cluster, job_id)
    assert done.returncode == 0, done.stdout + done.stderr + logs
    assert f"job {job_id}: SUCCEEDED" in done.stdout

    rows = SweepResults.of(parse_spec(raw)).table()
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows), rows
    assert verify(str(tmp_path / "models" / "on-cluster"))["sweep"] == "on-cluster"
    assert "promoted trial" in logs

    bad = {**raw, "name": "bad-spec", "job": {**raw["job"], "trainig": {"epochs": 1}}}
    failed, bad_id = submit(cluster, write_spec(tmp_path, bad))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"job {bad_id}: FAILED" in failed.stdout
    assert "trainig: unknown field" in job_logs(cluster, bad_id)


def test_a_submission_with_another_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    spec = ROOT / "sweeps" / "examples" / "laptop.yaml"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("not-the-cluster-token")
    refused, _ = submit(cluster, spec, env={**cluster.env, "HOME": str(tmp_path)})
    assert refused.returncode != 0
    assert "auth" in (refused.stdout + refused.stderr).lower()
    listed = subprocess.run(
        [RAY, "job", "list"], env=cluster.cli_env, capture_output=True, text=True, check=True
    )
    assert "laptop" not in listed.stdout
