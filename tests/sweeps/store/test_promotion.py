"""Storage and promotion against a real S3-API server (moto's server mode on loopback, read and
written through pyarrow's S3 filesystem) and on a local path: a tiny-model sweep keeps its
checkpoints in the bucket, its best checkpoint is promoted with a manifest, and the promoted
folder loads with `from_pretrained` and predicts as the in-sweep model did."""

from __future__ import annotations

import itertools
import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pa_fs
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sweeps import cli
from sweeps.errors import PromotionError
from sweeps.results.queries import SweepResults, best_report
from sweeps.running.promotion import promote_best
from sweeps.running.runner import run_sweep
from sweeps.spec import SweepSpec, apply_params, parse_spec
from sweeps.store import storage
from sweeps.store.model_versions import LATEST, MANIFEST, resolve, verify, versions
from sweeps.store.storage import Location
from tests.sweeps.running.test_sweep_e2e import tiny_spec
from trainables.evaluation import evaluate_folder
from trainables.objective import Objective

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

BUCKET = "sweeps-bucket"
SENTENCES = ["the film was great", "awful plot and weak cast", "a story", "superb really"]
# With AdamW's decoupled decay at lr 10 x weight decay 1, weights scale by -9 every step and
# overflow within 20 steps (of 30): that trial's val_loss is NaN.
HUGE_LR = 10.0


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with one bucket."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"127.0.0.1:{port}"
    pa_fs.S3FileSystem(
        endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True
    ).create_dir(BUCKET)
    yield endpoint
    server.stop()


def s3_uri(endpoint: str, prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


@pytest.fixture(scope="module")
def s3_sweep(s3_endpoint: str, tiny_model_dir: str, separable_files: dict[str, str]) -> SweepSpec:
    """A 2-trial grid of the tiny model stored in the bucket, one trial diverging to NaN,
    promoted to the bucket whenever its best improves."""
    raw = tiny_spec(tiny_model_dir, separable_files, Path("unused"))
    raw["name"] = "s3-tiny"
    raw["storage_path"] = s3_uri(s3_endpoint, "sweeps")
    raw["job"]["data"]["test"] = separable_files["test"]
    raw["job"]["training"] |= {"max_steps": 30, "eval_every": 10, "monitor": "val_loss"}
    raw["job"] |= {"optimizer": {"weight_decay": 1.0}, "schedule": {"name": "constant"}}
    raw["search"] = {
        "method": "grid",
        "metric": "val_loss",
        "mode": "min",
        "space": {"optimizer.lr": {"grid": [3e-3, HUGE_LR]}},
    }
    raw["scheduler"] = {"name": "fifo"}
    raw["promote"] = {"to": s3_uri(s3_endpoint, "models"), "when": "improvement"}
    spec = parse_spec(raw)
    run_sweep(spec)
    return spec


def download(folder: Location, local: Path) -> Path:
    for name in storage.files(folder):
        storage.copy_file(folder.join(name), Location.of(str(local)).join(name))
    return local


def logits(folder: Path) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits


def destination(kind: str, s3_endpoint: str, tmp_path: Path) -> str:
    return s3_uri(s3_endpoint, f"dest-{tmp_path.name}") if kind == "s3" else str(tmp_path / "d")


@pytest.mark.timeout(600)
def test_checkpoints_live_in_the_bucket_and_a_nan_trial_is_never_promoted(
    s3_sweep: SweepSpec,
) -> None:
    spec = s3_sweep
    rows = SweepResults.of(spec).table()
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows)
    reports = SweepResults.of(spec).rows()
    root = Location.of(spec.storage_path)
    for trial_id in {r["trial_id"] for r in rows}:
        kept = storage.folders(root.join(spec.name, "train", trial_id))
        kept = [name for name in kept if name.startswith("checkpoint_")]
        # checkpoints_to_keep: 1, the best by the target metric, plus the latest, which Ray
        # keeps to resume from; the other reports' checkpoints are gone from the bucket.
        assert 1 <= len(kept) <= 2
        mine = [r for r in reports if r["trial_id"] == trial_id]
        finite = [r for r in mine if math.isfinite(r["val_loss"])]
        if finite and len(mine) == 3:
            best_row = min(finite, key=lambda r: r["val_loss"])
            assert storage.exists(root.at(best_row["checkpoint_path"]))
            assert len(kept) < len(mine)
    nan_trials = {r["trial_id"] for r in rows if r["params"]["optimizer.lr"] == HUGE_LR}
    assert any(not math.isfinite(r["val_loss"]) for r in reports if r["trial_id"] in nan_trials)
    best = SweepResults.of(spec).best()
    assert best is not None and best.trial_id not in nan_trials
    # `when: improvement`: a version per better checkpoint, each complete, the latest the best.
    assert spec.promote is not None
    sweep_dest = Location.of(spec.promote.to).join(spec.name)
    found = versions(sweep_dest)
    assert found and all(manifest is not None for manifest in found.values())
    values = [found[n]["selected_by"]["value"] for n in sorted(found)]  # type: ignore[index]
    assert all(earlier > later for earlier, later in itertools.pairwise(values))
    promoted = verify(str(sweep_dest))
    assert promoted["version"] == f"v{max(found)}" and promoted["trial_id"] == best.trial_id
    assert promoted["source"]["checkpoint"] == str(best.checkpoint)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["s3", "local"])
def test_the_promoted_model_loads_and_predicts_as_in_the_sweep(
    s3_sweep: SweepSpec, s3_endpoint: str, tmp_path: Path, kind: str
) -> None:
    spec = s3_sweep
    dest = destination(kind, s3_endpoint, tmp_path)
    done = promote_best(spec, to=dest)
    assert done is not None and done.created and done.version == "v1"
    best = SweepResults.of(spec).best()
    assert best is not None

    promoted = download(done.location, tmp_path / "promoted")
    in_sweep = download(best.checkpoint, tmp_path / "ckpt")
    torch.testing.assert_close(logits(promoted), logits(in_sweep), rtol=0, atol=0)
    assert not (promoted / "training_state.pt").exists()  # only what from_pretrained needs

    manifest = json.loads((promoted / MANIFEST).read_text())
    assert manifest["sweep"] == spec.name and manifest["trial_id"] == best.trial_id
    assert manifest["hyperparameters"] == best.params
    assert manifest["metrics"]["val_loss"] == best.metrics["val_loss"]
    assert set(manifest["versions"]) >= {"torch", "transformers", "ray"}
    assert len(manifest["spec_sha256"]) == 64
    assert set(manifest["files"]) == {p.name for p in promoted.iterdir()} - {MANIFEST}
    # The promoted weights score on validation what the trial reported in the sweep, and are
    # scored on the test split too (2 ranks against one process: tests/integration/test_ddp_loop).
    job = apply_params(spec.job, best.params)
    val = evaluate_folder(job, str(promoted), "validation")
    assert val is not None and val["val_loss"] == pytest.approx(best.metrics["val_loss"])
    test = evaluate_folder(job, str(promoted))
    assert test is not None and manifest["test_metrics"] == pytest.approx(test)

    again = promote_best(spec, to=dest)  # the same checkpoint again: nothing changes
    assert again is not None and not again.created and again.version == "v1"
    names = storage.folders(Location.of(dest).join(spec.name))
    assert [n for n in names if n.startswith("v")] == ["v1"]
    assert resolve(str(Location.of(dest).join(spec.name))) == done.location
    if kind == "local":
        assert Path(dest, spec.name, LATEST).resolve() == Path(done.location.path)
        logits(Path(dest, spec.name, LATEST))  # `from_pretrained(DEST/<sweep>/latest)` works


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["s3", "local"])
def test_an_interrupted_copy_leaves_no_manifest_and_a_rerun_completes_it(
    s3_sweep: SweepSpec, s3_endpoint: str, tmp_path: Path, kind: str
) -> None:
    spec = s3_sweep
    dest = destination(kind, s3_endpoint, tmp_path)
    copied: list[str] = []

    def die_after_two_files(name: str) -> None:
        copied.append(name)
        if len(copied) == 2:
            raise KeyboardInterrupt("killed halfway through the copy")

    with pytest.raises(KeyboardInterrupt):
        promote_best(spec, to=dest, on_file_copied=die_after_two_files)
    sweep_dest = Location.of(dest).join(spec.name)
    assert len(storage.files(sweep_dest.join("v1"))) == 2
    assert not storage.exists(sweep_dest.join("v1", MANIFEST))
    with pytest.raises(PromotionError, match="no manifest.json"):
        resolve(str(sweep_dest))  # readers treat the half-copied folder as absent

    done = promote_best(spec, to=dest)
    assert done is not None and done.created and done.version == "v1"
    assert cli.main(["verify", str(sweep_dest)]) == 0

    # One altered byte, anywhere: verify names the file and fails.
    weights = sweep_dest.join("v1", "model.safetensors")
    data = bytearray(storage.read_bytes(weights))
    data[len(data) // 2] ^= 0x01
    storage.write_bytes(weights, bytes(data))
    with pytest.raises(PromotionError, match=r"model\.safetensors: SHA-256 differs"):
        verify(str(done.location))
    assert cli.main(["verify", done.location.uri]) == 1


def test_best_report_skips_non_finite_metrics_and_deleted_checkpoints_and_breaks_ties() -> None:
    def row(trial: str, it: int, value: float, ckpt: str = "c") -> dict:
        return {
            "trial_id": trial,
            "training_iteration": it,
            "val_loss": value,
            "checkpoint_path": f"{trial}/{it}/{ckpt}",
        }

    rows = [
        row("a", 1, float("nan")),
        row("b", 1, float("-inf")),
        row("c", 1, 0.1, ckpt="deleted"),
        row("d", 2, 0.3),
        row("d", 1, 0.3),
        row("e", 1, 0.3),
        row("f", 1, 0.5),
    ]
    by_loss = Objective("val_loss", "min")
    picked = best_report(rows, by_loss, lambda path: not path.endswith("deleted"))
    assert picked is not None and (picked["trial_id"], picked["training_iteration"]) == ("d", 1)
    assert best_report(rows[:2], by_loss, lambda path: True) is None
