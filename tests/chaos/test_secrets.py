"""Chaos: secrets in the environment of `sweeps run` land in no file anything writes.

The sweep stores on S3 (a moto server), promotes there, and streams to an online W&B (a local
server, `tests/wandb_server.py`), with random sentinel credentials in its environment; it
starts a Ray runtime of its own (the session's is stopped meanwhile: one Ray per machine), so
its trial processes inherit them. The scanner (`tests/chaos/scan.py`) reads files as their
readers do (Parquet decoded, W&B run files record by record, compressed streams inflated) and
looks for each secret as text, hex, base64 and UTF-16.

The controls: a sentinel that the product's own writers put in its files (the results file, a
W&B run's config, a promotion manifest, a log line of a trial process) is found, each in its
own test. Then the real sweep's files (the test's folder, the bucket, the sweep's Ray session,
and whatever under `~/.cache` and `~/.config` changed meanwhile) hold none.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pa_fs
import pytest
import ray
import yaml

from sweeps.results.queries import BestTrial
from sweeps.results.results_file import RESULTS_FILE
from sweeps.results.results_log import ResultsLog
from sweeps.results.wandb_runs import SERVICE_TEARDOWN_S, release_wandb
from sweeps.results.wandb_stream import StreamConfig, WandbStreamer
from sweeps.spec import WandbSpec
from sweeps.store.model_versions import MANIFEST, promote
from sweeps.store.storage import Location
from tests.chaos.scan import Places, Scan, scan, scan_bytes
from tests.conftest import RAY_SESSION_INIT
from tests.sweeps.running.test_sweep_e2e import tiny_spec
from tests.sweeps.store.test_promotion import BUCKET, s3_endpoint, s3_uri  # noqa: F401  (moto S3)
from tests.wandb_server import FakeWandb
from trainables.config import parse_config
from trainables.objective import Objective

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

# Random per test run, high entropy: a compressor cannot shrink them to nothing, and no file
# holds one by chance.
SECRETS = {
    name: secrets.token_urlsafe(32)
    for name in ("WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
}
# W&B takes a key of 40+ characters after an optional `<host>-` prefix; the scan looks for the
# random part alone (a writer may drop the prefix).
ENVIRONMENT = SECRETS | {"WANDB_API_KEY": "local-" + SECRETS["WANDB_API_KEY"]}


def session_dir() -> Path:
    """The running Ray session's directory, as the session itself reports it."""
    return Path(ray._private.worker._global_node.get_session_dir_path())


def places_of(tmp_path: Path, endpoint: str, prefix: str, ray_folder: Path) -> Places:
    """Where the scan looks: the test's folder, every object below `prefix` in the bucket, and
    what changes from now on in `ray_folder` (a Ray session's, or Ray's folder of sessions)
    and in the user's caches and settings."""
    home = Path.home()
    return Places(
        folders=[tmp_path],
        recent=[ray_folder, home / ".cache", home / ".config", home / ".netrc"],
        since=time.time() - 1,  # file times may be coarser than the clock
        s3=(
            pa_fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1"),
            f"{BUCKET}/{prefix}",
        ),
    )


# The controls: each plants a token through one of the product's writers and returns the file
# (or a folder's path, ending in "/") the scan must name.


@dataclass(frozen=True)
class Plot:
    """What a control may plant into."""

    tmp_path: Path
    s3_endpoint: str
    prefix: str
    request: pytest.FixtureRequest


def plant_in_results(token: str, at: Plot) -> str:
    """A trial's parameter, through the results callback, into the results file on S3."""
    log = ResultsLog(s3_uri(at.s3_endpoint, f"{at.prefix}/{RESULTS_FILE}"))
    trial = SimpleNamespace(trial_id="t1", config={"note": token}, status="TERMINATED")
    log.on_trial_start(0, [], trial)
    log.on_trial_result(0, [], trial, {"step": 2, "val_accuracy": 0.5, "config": trial.config})
    log.on_trial_complete(0, [], trial)
    log.on_experiment_end([trial])  # rewrites the file, drops the journal
    return f"s3://{BUCKET}/{at.prefix}/{RESULTS_FILE}"


def plant_in_wandb(token: str, at: Plot) -> str:
    """A trial's parameter, through the W&B streamer, into its offline run's config."""
    folder = at.tmp_path / "wb"
    streamer = WandbStreamer(
        StreamConfig(
            sweep="control",
            mode="offline",
            directory=str(folder),
            wandb=WandbSpec(project="p"),
            objective=Objective("val_accuracy", "max"),
            job_config=dict,
            planned=None,
            sweep_config={},
        )
    )
    trial = SimpleNamespace(trial_id="t1", config={"note": token}, status="TERMINATED")
    streamer.on_trial_start(0, [], trial)
    streamer.on_trial_result(0, [], trial, {"step": 2, "val_accuracy": 0.5})
    streamer.on_trial_complete(0, [], trial)
    streamer.on_experiment_end([trial])
    # W&B's service would hold this process at exit (as it does a sweep's: see release_wandb).
    release_wandb(SERVICE_TEARDOWN_S)
    (run,) = (p for p in folder.rglob("run-*.wandb") if "control-t1" in p.name)
    return str(run)


def plant_in_manifest(token: str, at: Plot) -> str:
    """A trial's parameter, through the promotion, into the manifest on S3."""
    model: str = at.request.getfixturevalue("tiny_model_dir")
    files: dict[str, str] = at.request.getfixturevalue("separable_files")
    job = parse_config(
        {
            "model": {"name_or_path": model},
            "data": {
                "train": files["train"],
                "validation": files["validation"],
                "text_column": "sentence",
                "label_column": "sentiment",
            },
        }
    )
    best = BestTrial("t1", {"note": token}, {"val_accuracy": 0.5}, Location.of(model))
    done = promote(
        best,
        job,
        s3_uri(at.s3_endpoint, at.prefix),
        sweep="control",
        objective=Objective("val_accuracy", "max"),
        spec_sha256="0" * 64,
    )
    return f"s3://{BUCKET}/{at.prefix}/control/{done.version}/{MANIFEST}"


def plant_in_log(token: str, at: Plot) -> str:
    """A line through the training code's logger, in a process of the session's Ray runtime
    (where trial processes log): into that session's log files."""

    @ray.remote(num_cpus=0)
    def log_line(text: str) -> None:
        from trainables import checkpointing

        checkpointing.logger.warning("control: %s", text)

    ray.get(log_line.remote(token))
    return str(session_dir() / "logs") + "/"


CONTROLS: dict[str, Callable[[str, Plot], str]] = {
    "results-parquet": plant_in_results,
    "wandb-run-file": plant_in_wandb,
    "promotion-manifest": plant_in_manifest,
    "log-line": plant_in_log,
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("control", list(CONTROLS))
def test_a_secret_that_the_product_writes_is_found(
    control: str,
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    token = secrets.token_urlsafe(32)
    prefix = f"controls/{control}"
    places = places_of(tmp_path, s3_endpoint, prefix, session_dir())
    expected = CONTROLS[control](token, Plot(tmp_path, s3_endpoint, prefix, request))

    found = scan(places, {"planted": token})

    assert not found.undecodable
    where = {w for _, w in found.where()}
    if expected.endswith("/"):
        assert any(w.startswith(expected) for w in where), (expected, sorted(found.leaks, key=str))
    else:
        assert expected in where, (expected, sorted(found.leaks, key=str))


def ray_sessions(root: Path) -> set[Path]:
    return {p for p in root.glob("session_2*") if p.is_dir() and not p.is_symlink()}


@pytest.fixture
def without_the_session_ray(ray_session: None) -> Iterator[tuple[Path, set[Path]]]:
    """The session's Ray runtime stopped for the test and started again after it, with the same
    arguments; yields Ray's folder of sessions and the sessions in it before the test."""
    root = session_dir().parent
    before = ray_sessions(root)
    ray.shutdown()
    try:
        yield root, before
    finally:
        ray.init(**RAY_SESSION_INIT)


def describe(found: Scan) -> str:
    return "\n".join(
        f"{leak.name} in {leak.where} ({leak.how})" for leak in sorted(found.leaks, key=str)
    )


@pytest.mark.timeout(600)
def test_secrets_in_the_environment_appear_in_no_file_of_an_s3_online_sweep(
    s3_endpoint: str,  # noqa: F811
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
    without_the_session_ray: tuple[Path, set[Path]],
) -> None:
    ray_root, sessions_before = without_the_session_ray
    # Ray's whole folder: the sweep's session is new (every file in it is scanned), and any
    # other file Ray changed meanwhile.
    places = places_of(tmp_path, s3_endpoint, "secrets", ray_root)

    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path, num_samples=1)
    raw["name"] = "secrets"
    raw["storage_path"] = s3_uri(s3_endpoint, "secrets/sweeps")
    raw["promote"] = {"to": s3_uri(s3_endpoint, "secrets/models")}
    raw["wandb"] = {"mode": "online", "project": "p", "dir": str(tmp_path / "wb")}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    with FakeWandb() as server:
        # No RAY_ADDRESS: the command starts a Ray runtime of its own, whose processes (the
        # trials') inherit these secrets.
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env |= ENVIRONMENT | {"WANDB_BASE_URL": server.url}
        out = subprocess.run(
            [sys.executable, "-m", "sweeps", "run", str(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert server.of("upsertBucket"), "the runs did not go online"

    (own,) = ray_sessions(ray_root) - sessions_before  # the sweep's own runtime
    found = scan(places, SECRETS)
    # What was scanned holds what the sweep wrote: run files, the promotion, the trial's logs.
    assert any(w.endswith(".wandb") for w in found.read)
    assert any(w.startswith("s3://") and w.endswith(MANIFEST) for w in found.read)
    assert any(
        w.startswith(f"s3://{BUCKET}/secrets/sweeps") and w.endswith(RESULTS_FILE)
        for w in found.read
    )
    assert any(w.startswith(str(own / "logs" / "worker-")) for w in found.read)
    assert not found.undecodable
    output = Scan()
    scan_bytes("output", (out.stdout + out.stderr).encode(), SECRETS, output)
    assert not output.leaks, describe(output)
    assert not found.leaks, describe(found)
