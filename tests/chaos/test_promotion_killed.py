"""Chaos: the process promoting a model is SIGKILLed in the middle of writing a file.

The interrupted version has no manifest, `latest` still names the previous complete version
(which still verifies), and running the same promotion again completes the new version.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps.store.model_versions import MANIFEST, read_manifest, resolve, verify
from sweeps.store.storage import Location

pytestmark = [pytest.mark.chaos]

# A weights file big enough that its copy takes a while: the kill lands inside it.
BIG = "extra_weights.bin"
BIG_BYTES = 384 << 20

PROMOTE = """
import sys
from sweeps.results.queries import BestTrial
from sweeps.store.model_versions import promote
from sweeps.store.storage import Location
from trainables.config import parse_config
from trainables.objective import Objective

checkpoint, dest, model, train, validation = sys.argv[1:]
job = parse_config({
    "model": {"name_or_path": model},
    "data": {"train": train, "validation": validation, "text_column": "sentence",
             "label_column": "sentiment"},
})
best = BestTrial("t1", {"optimizer.lr": 1e-3}, {"val_accuracy": 0.5}, Location.of(checkpoint))
done = promote(best, job, dest, sweep="chaos", objective=Objective("val_accuracy", "max"),
               spec_sha256="0" * 64)
print(done.version, done.created)
"""


def promote_command(checkpoint: Path, dest: Path, model: str, files: dict[str, str]) -> list:
    args = [str(checkpoint), str(dest), model, files["train"], files["validation"]]
    return [sys.executable, "-c", PROMOTE, *args]


def checkpoint_with_big_file(model_dir: str, folder: Path) -> Path:
    shutil.copytree(model_dir, folder)
    with (folder / BIG).open("wb") as out:
        out.write(os.urandom(BIG_BYTES))
    return folder


def kill_mid_file(command: list, target: Path, env: dict[str, str]) -> None:
    """Starts `command` and SIGKILLs it once `target` exists and is partly written."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if target.exists() and 0 < target.stat().st_size < BIG_BYTES:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        process.kill()
        _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert 0 < target.stat().st_size < BIG_BYTES, "the kill did not land mid-file"


@pytest.mark.timeout(300)
def test_a_promotion_killed_mid_file_leaves_latest_on_the_last_complete_version(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the killed process's scratch copy stays here
    first = subprocess.run(
        promote_command(Path(tiny_model_dir), dest, tiny_model_dir, separable_files),
        env=env,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0 and first.stdout.split() == ["v1", "True"], first.stderr
    second = checkpoint_with_big_file(tiny_model_dir, tmp_path / "checkpoint-2")
    command = promote_command(second, dest, tiny_model_dir, separable_files)

    kill_mid_file(command, dest / "chaos" / "v2" / BIG, env)

    assert read_manifest(Location.of(str(dest / "chaos" / "v2"))) is None
    assert not (dest / "chaos" / "v2" / MANIFEST).exists()
    assert os.readlink(dest / "chaos" / "latest") == "v1"
    assert resolve(str(dest / "chaos")).name == "v1"
    assert verify(str(dest / "chaos"))["version"] == "v1"

    again = subprocess.run(command, env=env, capture_output=True, text=True)

    assert again.returncode == 0 and again.stdout.split() == ["v2", "True"], again.stderr
    assert os.readlink(dest / "chaos" / "latest") == "v2"
    manifest = verify(str(dest / "chaos"))
    assert manifest["version"] == "v2" and BIG in manifest["files"]
    assert (dest / "chaos" / "v2" / BIG).stat().st_size == BIG_BYTES
