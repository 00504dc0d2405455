"""Chaos: a worker node is removed mid-sweep (every process of the node SIGKILLed, as when a
machine goes away) on a 2-node local cluster: the session's Ray runtime plus a node that
`ray start --address` joined to it.

The trials it ran go on, on the node that is left, from their checkpoints (no report made
before the loss is made again); the sweep finishes.
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

import pytest
import ray
from ray._common.utils import get_ray_address_file  # private: where `ray start` records it
from ray.util.state import list_actors

from sweeps.results.results import read_results
from tests.chaos.killer import SNAPSHOT
from tests.chaos.sweep import fifo_sweep, sweeps_command, write_spec
from tests.cluster.test_submit import node_ports

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

STEPS, EVERY = 40, 10
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


def trials_on(node_id: str) -> list:
    """The live actors of trials on the node: a one-worker trial runs its loop in its Tune
    trial actor; a trial of more workers, in its Train workers."""
    return list_actors(filters=[("state", "=", "ALIVE"), ("node_id", "=", node_id)])


@pytest.mark.timeout(900)
def test_a_removed_worker_node_moves_its_trials_to_the_other_node_from_their_checkpoints(
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
    worker_node: tuple[subprocess.Popen, str],
) -> None:
    node, node_id = worker_node
    raw = fifo_sweep(tiny_model_dir, separable_files, tmp_path, "nodes", 2, STEPS, EVERY)
    command, env = sweeps_command("run", str(write_spec(tmp_path, raw)))
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    train = tmp_path / "nodes" / "train"

    # Removed once a trial on it has a registered checkpoint and more steps to go.
    deadline = time.monotonic() + 400
    while True:
        assert time.monotonic() < deadline and driver.poll() is None, "no trial on the node"
        at_kill = registered_steps(train)
        if trials_on(node_id) and any(step < STEPS for step in at_kill.values()):
            break
        time.sleep(0.2)
    os.killpg(node.pid, signal.SIGKILL)
    removed_at = time.time()
    output = driver.communicate(timeout=600)[0].decode()

    assert driver.returncode == 0, output[-4000:]
    rows = read_results(str(tmp_path / "nodes" / "results.parquet"))
    trials = {r["trial_id"] for r in rows}
    assert len(trials) == 2 and {r["trial_status"] for r in rows} == {"TERMINATED"}
    for trial in trials:
        steps = sorted(r["step"] for r in rows if r["trial_id"] == trial)
        assert steps == list(range(EVERY, STEPS + 1, EVERY)), (trial, steps)
    # Training went on after the node was gone, so on the node that is left. Who restarted the
    # lost workers depends on where the trial's Train controller ran: Tune retries the trial
    # (and writes its error.txt) when the controller died with the node, Train restarts the
    # worker group when it did not; either must go on from the checkpoint.
    assert any(row["timestamp"] > removed_at for row in rows), output[-4000:]
    # No trial started again from scratch: what it had checkpointed stayed reported.
    for row in rows:
        if row["step"] <= at_kill.get(row["trial_id"], 0):
            assert row["timestamp"] < removed_at, (row["trial_id"], row["step"])
