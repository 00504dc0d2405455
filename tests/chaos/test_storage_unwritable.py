"""Chaos: storage a sweep cannot write (a missing bucket, no credentials, an unreachable
endpoint, a read-only folder). `sweeps validate` and `sweeps run`, as a user types them, say so
before Ray starts, naming the spec key, the URI and the reason.

Both commands run the same check (`sweeps.store.storage.check_storage`) first; `run` is shown
once (a missing bucket), the other cases through `validate`, which starts faster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.sweeps.running.test_sweep_e2e import tiny_spec
from tests.sweeps.store.test_promotion import s3_endpoint, s3_uri  # noqa: F401  (moto S3 server)

pytestmark = [pytest.mark.chaos]

# Where a command that started or joined Ray would fail at once, with Ray's own error: a
# storage error printed instead shows the check ran before Ray.
NO_RAY = "127.0.0.1:1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Root writes through any folder's permissions (CAP_DAC_OVERRIDE): run as root, the command
# gives those capabilities up first, as an unprivileged user never had them.
AS_A_USER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    if os.geteuid() == 0
    else []
)


def sweeps(
    command: str,
    spec: dict,
    folder: Path,
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess:
    path = folder / f"{command}.yaml"
    path.write_text(yaml.safe_dump(spec))
    if env is None:  # a user's credentials (the moto server takes any), no metadata service
        env = {**os.environ, **CREDENTIALS}
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "sweeps", command, str(path)],
        env={**env, "RAY_ADDRESS": NO_RAY},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )


def spec_at(storage: str, tiny_model_dir: str, separable_files: dict[str, str]) -> dict:
    raw = tiny_spec(tiny_model_dir, separable_files, Path("unused"), num_samples=1)
    raw["storage_path"] = storage
    return raw


def assert_refused(out: subprocess.CompletedProcess, *parts: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "storage_path: cannot write to" in out.stderr, out.stderr
    for part in parts:
        assert part in out.stderr, out.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_bucket_is_refused_before_ray_starts(
    command: str,
    s3_endpoint: str,  # noqa: F811
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
) -> None:
    uri = s3_uri(s3_endpoint, "sweeps").replace("s3://sweeps-bucket/", "s3://no-such-bucket/")
    out = sweeps(command, spec_at(uri, tiny_model_dir, separable_files), tmp_path)
    assert_refused(out, "s3://no-such-bucket/sweeps", "not found")


@pytest.mark.timeout(120)
def test_missing_credentials_are_refused(
    s3_endpoint: str,  # noqa: F811
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    uri = s3_uri(s3_endpoint, "sweeps")
    out = sweeps("validate", spec_at(uri, tiny_model_dir, separable_files), tmp_path, env)
    assert_refused(out, "s3://sweeps-bucket/sweeps", "no AWS credentials found")


@pytest.mark.timeout(120)
def test_an_unreachable_endpoint_is_refused(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    endpoint = f"127.0.0.1:{closed_port()}"
    uri = f"s3://sweeps-bucket/sweeps?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    out = sweeps("validate", spec_at(uri, tiny_model_dir, separable_files), tmp_path)
    assert_refused(out, endpoint, "connect")


@pytest.mark.timeout(120)
def test_a_read_only_folder_is_refused(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    spec = spec_at(str(read_only / "sweeps"), tiny_model_dir, separable_files)
    out = sweeps("validate", spec, tmp_path, prefix=AS_A_USER)
    read_only.chmod(0o755)
    assert_refused(out, str(read_only / "sweeps"), "Permission denied")


@pytest.mark.timeout(120)
def test_writable_storage_passes_and_keeps_no_probe_file(
    s3_endpoint: str,  # noqa: F811
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path: Path,
) -> None:
    """The control: the same check on a bucket it can write lets validation go on."""
    import pyarrow.fs as pa_fs

    uri = s3_uri(s3_endpoint, "probe-control")
    out = sweeps("validate", spec_at(uri, tiny_model_dir, separable_files), tmp_path)
    assert out.returncode == 0, out.stderr
    assert ": valid;" in out.stdout
    fs = pa_fs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1")
    left = fs.get_file_info(pa_fs.FileSelector("sweeps-bucket/probe-control", allow_not_found=True))
    assert left == []


@pytest.mark.timeout(120)
def test_data_on_an_unreachable_endpoint_is_an_error_naming_the_field(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    """Found by the spec fuzzing on cluster.yaml (its bucket has no route here): a traceback."""
    endpoint = f"127.0.0.1:{closed_port()}"
    spec = spec_at(str(tmp_path / "sweeps"), tiny_model_dir, separable_files)
    spec["job"]["data"]["train"] = (
        f"s3://data/train.csv?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    )
    out = sweeps("validate", spec, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "data.train: cannot read" in out.stderr and "s3://data/train.csv" in out.stderr
