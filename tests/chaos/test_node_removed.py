"""Chaos: a worker node is removed mid-sweep (every process of the node SIGKILLed, as when a
machine goes away) on a 2-node local cluster: the session's Ray runtime plus a node that
`ray start --address` joined to it.

The node removed is the one that runs a chosen trial (the one whose process, found through
Ray's state API, is on it), once that trial has a registered checkpoint and steps to go. Read
from Tune's raw report stream (`result.json`: every report as it came, with the process that
made it), the chosen trial reported from a process of that node before the loss, and after it
from a process on the node that is left, at steps above its last checkpoint only (nothing
checkpointed is trained again); the sweep finishes with both trials done.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import ray
from ray._common.utils import get_ray_address_file  # private: where `ray start` records it
from ray.util.state import list_actors

from sweeps.results.results_file import read_results
from tests.chaos.killer import SNAPSHOT
from tests.chaos.sweep import fifo_sweep, sweeps_command, write_spec
from tests.cluster.test_submit import node_ports

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

# A report and checkpoint every 10 steps of ~0.06 s: a window of seconds for the kill.
STEPS, EVERY = 60, 10
RAY = str(Path(sys.executable).with_name("ray"))


def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


@pytest.fixture
def worker_node(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A second node of 2 CPUs joined to the session's runtime (the token is the session's,
    in ~/.ray/auth_token); its process group is killed whatever happens."""
    before = {n["NodeID"] for n in alive_nodes()}
    # `ray start --address` records the address for later `ray.init()` calls to join; a later
    # test's (or user's) `ray.init()` would then try this node's cluster once it is gone.
    address_file = Path(get_ray_address_file(None))
    recorded = address_file.read_text() if address_file.exists() else None
    log = (tmp_path / "node.log").open("w")
    node = subprocess.Popen(
        [
            RAY,
            "start",
            f"--address={ray.get_runtime_context().gcs_address}",
            "--num-cpus=2",
            "--block",
            "--disable-usage-stats",
            # Its own ports: two raylets on one machine must not share one.
            *(flag for flag in node_ports() if not flag.startswith("--port=")),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not ({n["NodeID"] for n in alive_nodes()} - before):
        assert time.monotonic() < deadline and node.poll() is None, "the node did not join"
        time.sleep(1)
    (node_id,) = {n["NodeID"] for n in alive_nodes()} - before
    try:
        restore(address_file, recorded)
        yield node, node_id
    finally:
        restore(address_file, recorded)
        with contextlib.suppress(ProcessLookupError):  # killed by the test already
            os.killpg(node.pid, signal.SIGKILL)
        node.wait()
        log.close()
        deadline = time.monotonic() + 60  # later tests see the session's one node
        while any(n["NodeID"] == node_id for n in alive_nodes()) and time.monotonic() < deadline:
            time.sleep(1)


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILLs every process of the node, as when its machine goes away: `ray start`'s
    process group and every process descended from it (the raylet's workers need not be in
    that group). The tree is stopped first so that no process starts between listing and
    killing it."""
    root = psutil.Process(node.pid)
    for _ in range(2):  # stop the tree, then list it again: nothing new can start
        tree = [root, *root.children(recursive=True)]
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def restore(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text)


def registered_steps(train: Path) -> dict[str, int]:
    """Each trial's last step with a checkpoint Train has registered, from its snapshot."""
    steps: dict[str, int] = {}
    for snapshot in train.glob(f"*/{SNAPSHOT}"):
        try:
            state = json.loads(snapshot.read_text())
        except (OSError, ValueError):  # being rewritten
            continue
        done = [int(r["metrics"]["step"]) for r in state.get("checkpoint_results", [])]
        if done:
            steps[snapshot.parent.name] = max(done)
    return steps


def reports(since: float) -> list[dict]:
    """Every report in the Tune result streams (`result.json`) written since `since`: the
    driver's copies in the session's folder, appended to as each report arrives, each with the
    reporting process's `pid` (Tune's own field)."""
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    rows = []
    for stream in session.glob("artifacts/*/*/driver_artifacts/*/result.json"):
        if stream.stat().st_mtime < since:
            continue
        for line in stream.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                rows.append(json.loads(line))
    return rows


def actor_pids(node_id: str) -> set[int]:
    """The processes of the live actors on the node: a one-worker trial runs its loop in its
    Tune trial actor; a trial of more workers, in its Train workers."""
    actors = list_actors(filters=[("state", "=", "ALIVE"), ("node_id", "=", node_id)])
    return {int(a.pid) for a in actors}


def node_of(pid: int) -> str | None:
    """The node of the actor process `pid` (live or dead), from Ray's actor table."""
    actors = list_actors(filters=[("pid", "=", pid)], detail=True)
    nodes = {a.node_id for a in actors}
    return nodes.pop() if len(nodes) == 1 else None


@pytest.mark.timeout(900)
def test_a_removed_worker_node_moves_its_trial_to_the_other_node_from_its_checkpoint(
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
    worker_node: tuple[subprocess.Popen, str],
) -> None:
    node, node_id = worker_node
    began = time.time()
    raw = fifo_sweep(tiny_model_dir, separable_files, tmp_path, "nodes", 2, STEPS, EVERY)
    command, env = sweeps_command("run", str(write_spec(tmp_path, raw)))
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    train = tmp_path / "nodes" / "train"

    # The chosen trial: the one whose reports come from an actor process on the node. The node
    # goes once that trial has a registered checkpoint and steps to go.
    deadline, listed = time.monotonic() + 400, 0.0
    on_node: set[int] = set()
    while True:
        assert time.monotonic() < deadline and driver.poll() is None, "no trial on the node"
        if time.monotonic() - listed > 1:
            on_node, listed = actor_pids(node_id), time.monotonic()
        hosted = {r["trial_id"]: r["pid"] for r in reports(began) if r["pid"] in on_node}
        steps = registered_steps(train)
        ready = [t for t in hosted if EVERY <= steps.get(t, 0) < STEPS]
        if ready:
            chosen = ready[0]
            break
        time.sleep(0.05)
    kill_node(node)
    removed_at = time.time()
    # What it had checkpointed when the node went (read after the kill: nothing on the node
    # registers a checkpoint any more).
    checkpointed = registered_steps(train)[chosen]
    lost = hosted[chosen]
    time.sleep(1)  # the kernel reaps what the kill ended
    died = not psutil.pid_exists(lost) or psutil.Process(lost).status() == psutil.STATUS_ZOMBIE
    output = driver.communicate(timeout=600)[0].decode()

    assert driver.returncode == 0, output[-4000:]
    rows = read_results(str(tmp_path / "nodes" / "results.parquet"))
    assert len({r["trial_id"] for r in rows}) == 2
    assert {r["trial_status"] for r in rows} == {"TERMINATED"}, output[-4000:]

    stream = [r for r in reports(began) if r["trial_id"] == chosen]
    before = [r for r in stream if r["pid"] == lost]
    after = [r for r in stream if r["pid"] != lost]
    # It ran on the node until the node went, and no longer reported from it after.
    assert before and node_of(lost) == node_id, (chosen, lost, before)
    assert all(r["timestamp"] <= removed_at for r in before), before
    # It went on after the node was gone, in processes of the node that is left, from its
    # checkpoint: every report after the loss is beyond the checkpointed step, up to the end.
    assert after, (chosen, output[-4000:])
    assert all(r["timestamp"] >= int(removed_at) for r in after), after
    alive = {n["NodeID"] for n in alive_nodes()}
    assert {node_of(r["pid"]) for r in after} <= alive - {node_id}, after
    assert min(r["step"] for r in after) > checkpointed, ([r["step"] for r in stream], checkpointed)
    assert max(r["step"] for r in after) == STEPS
    assert died, f"trial process {lost} outlived its node"
