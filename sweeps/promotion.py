"""Promotion: the sweep's best checkpoint, copied to one known place with a manifest.

    DEST/<sweep>/v1/           model and tokenizer (`save_pretrained` files), manifest.json
    DEST/<sweep>/v2/           a later, better checkpoint
    DEST/<sweep>/latest        the newest complete version (a symlink on local disk, else a
                               text object holding its name)

`manifest.json` is written last: a folder without one is an interrupted copy, and every reader
treats it as absent. Promoting a checkpoint that a version already holds changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweeps import storage
from sweeps.errors import PromotionError
from sweeps.results import params_of, read_results
from sweeps.spec import SweepSpec
from sweeps.storage import Location
from trainables.reporting import REPORTED_METRICS

MANIFEST = "manifest.json"
LATEST = "latest"
MANIFEST_FORMAT = 1
_VERSION = re.compile(r"^v(\d+)$")
# Checkpoint files that only resume training; a promoted model leaves them behind.
_TRAINING_ONLY = re.compile(r"^(training_state\.pt|rng_rank\d+\.pt)$|(^|/)\.")


@dataclass(frozen=True)
class Candidate:
    """One report of one trial, with its checkpoint."""

    trial_id: str
    params: dict[str, Any]
    metrics: dict[str, float]
    checkpoint: Location


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: the version folder and whether this call wrote it."""

    version: str
    location: Location
    manifest: dict[str, Any]
    created: bool


def choose(
    rows: list[dict[str, Any]],
    metric: str,
    mode: str,
    checkpoint_exists: Callable[[str], bool],
) -> dict[str, Any] | None:
    """The report with the best finite `metric` whose checkpoint still exists.

    NaN and inf never win. Ties go to the earlier trial id, then the earlier report, so the
    choice is deterministic.
    """
    sign = 1 if mode == "max" else -1
    best: tuple[float, dict[str, Any]] | None = None
    for row in sorted(rows, key=lambda r: (r["trial_id"], r["training_iteration"])):
        value, ckpt = row.get(metric), row.get("checkpoint_path")
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            continue
        if best is not None and sign * value <= sign * best[0]:
            continue
        # Checkpoint retention may have deleted this report's checkpoint: never pick it.
        if not isinstance(ckpt, str) or not checkpoint_exists(ckpt):
            continue
        best = (float(value), row)
    return best[1] if best else None


def best_candidate(spec: SweepSpec, metric: str, mode: str) -> Candidate | None:
    """The sweep's best checkpoint by `metric`, read from its results file."""
    root = Location.of(spec.storage_path)
    rows = read_results(root.join(spec.name, "results.parquet").uri)
    row = choose(rows, metric, mode, lambda path: storage.exists(root.at(path)))
    if row is None:
        return None
    metrics = {
        k: float(row[k])
        for k in REPORTED_METRICS
        if isinstance(row.get(k), (int, float)) and math.isfinite(row[k])
    }
    return Candidate(row["trial_id"], params_of(row), metrics, root.at(row["checkpoint_path"]))


def versions(sweep_root: Location) -> dict[int, dict[str, Any] | None]:
    """Every version folder under `DEST/<sweep>`: its manifest, or None when incomplete."""
    found: dict[int, dict[str, Any] | None] = {}
    for name in storage.folders(sweep_root):
        if match := _VERSION.match(name):
            found[int(match[1])] = read_manifest(sweep_root.join(name))
    return found


def read_manifest(folder: Location) -> dict[str, Any] | None:
    """A version's manifest; None when there is none (an absent or interrupted version)."""
    target = folder.join(MANIFEST)
    if not storage.exists(target):
        return None
    return json.loads(storage.read_text(target))


def resolve(uri: str) -> Location:
    """A promoted version folder from its own URI or its sweep's (which means `latest`).

    Raises:
        PromotionError: when there is no complete version there.
    """
    loc = Location.of(uri)
    if read_manifest(loc) is not None:
        return loc
    latest = loc.join(LATEST)
    if storage.exists(latest):
        if loc.is_local and Path(latest.path).is_dir():
            version = os.readlink(latest.path)
        else:
            version = storage.read_text(latest).strip()
        if read_manifest(loc.join(version)) is not None:
            return loc.join(version)
    raise PromotionError(f"{loc}: no promoted model there (no {MANIFEST})")


def promote(
    spec: SweepSpec,
    to: str | None = None,
    on_file_copied: Callable[[str], None] | None = None,
) -> Promotion | None:
    """Copies the sweep's best checkpoint to `to` (default: the spec's `promote.to`).

    Returns None when no trial has a finite target metric with a checkpoint.

    Args:
        spec: The sweep.
        to: Destination root URI or path; the version lands in `<to>/<sweep>/v<N>`.
        on_file_copied: Called with each file's name after it is written (a test's fault).

    Raises:
        PromotionError: naming the destination when it cannot be written.
    """
    settings = spec.promote
    dest = to or (settings.to if settings else None)
    if not dest:
        raise PromotionError("promote.to: no destination; set it in the spec or pass --to")
    metric = (settings.metric if settings else None) or spec.search.metric
    mode = (settings.mode if settings else None) or spec.search.mode
    best = best_candidate(spec, metric, mode)
    if best is None:
        return None
    root = Location.of(dest).join(spec.name)
    try:
        existing = versions(root)
    except OSError as exc:
        raise PromotionError(f"promote.to: cannot read {root}: {exc}") from None
    for number, manifest in sorted(existing.items()):
        if manifest and manifest["source"]["checkpoint"] == str(best.checkpoint):
            return Promotion(f"v{number}", root.join(f"v{number}"), manifest, created=False)
    complete = [n for n, m in existing.items() if m is not None]
    version = f"v{max(complete, default=0) + 1}"
    target = root.join(version)
    try:
        manifest = _copy_version(spec, best, metric, mode, target, on_file_copied)
        _point_latest(root, version)
    except OSError as exc:
        raise PromotionError(f"promote.to: cannot write {target}: {exc}") from None
    if settings and settings.wandb_artifact:
        _log_artifact(spec, best, version, target)
    return Promotion(version, target, manifest, created=True)


def _copy_version(
    spec: SweepSpec,
    best: Candidate,
    metric: str,
    mode: str,
    target: Location,
    on_file_copied: Callable[[str], None] | None,
) -> dict[str, Any]:
    from sweeps.trial import job_for_trial
    from trainables.config import parse_config
    from trainables.evaluation import evaluate_folder

    # Whatever an interrupted earlier copy left here is rewritten from scratch.
    storage.delete(target)
    names = [n for n in storage.files(best.checkpoint) if not _TRAINING_ONLY.search(n)]
    if not names:
        raise PromotionError(f"{best.checkpoint}: the checkpoint holds no model files")
    with tempfile.TemporaryDirectory(prefix="promote-") as local:
        hashes = {
            name: storage.copy_file(best.checkpoint.join(name), Location.of(local).join(name))
            for name in names
        }
        job = parse_config(
            job_for_trial(spec.base_job.model_dump(mode="json"), best.params, best.trial_id),
            source=f"trial {best.trial_id}",
        )
        test_metrics = evaluate_folder(job, local)
        for name in names:
            written = storage.copy_file(Location.of(local).join(name), target.join(name))
            if written != hashes[name]:
                raise PromotionError(f"{target.join(name)}: changed while copying")
            if on_file_copied:
                on_file_copied(name)
    manifest = {
        "format": MANIFEST_FORMAT,
        "sweep": spec.name,
        "version": target.name,
        "trial_id": best.trial_id,
        "source": {"checkpoint": str(best.checkpoint)},
        "selected_by": {"metric": metric, "mode": mode, "value": best.metrics.get(metric)},
        "hyperparameters": best.params,
        "metrics": best.metrics,
        "test_metrics": test_metrics,
        "versions": _versions(),
        "spec_sha256": spec_hash(spec),
        "git_commit": _git_commit(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": {name: {"sha256": digest} for name, digest in sorted(hashes.items())},
    }
    storage.write_text(target.join(MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _point_latest(root: Location, version: str) -> None:
    latest = root.join(LATEST)
    if root.is_local:
        # A symlink lets `from_pretrained(DEST/<sweep>/latest)` work as is.
        tmp = Path(root.path, f".{LATEST}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(version, target_is_directory=True)
        os.replace(tmp, latest.path)
    else:
        storage.write_text(latest, version + "\n")


def verify(uri: str) -> dict[str, Any]:
    """Re-checks every file's SHA-256 against the manifest and loads the model; returns the
    manifest.

    Raises:
        PromotionError: naming the first missing or altered file, or why the model won't load.
    """
    folder = resolve(uri)
    manifest = read_manifest(folder)
    assert manifest is not None
    for name, entry in sorted(manifest["files"].items()):
        path = folder.join(name)
        if not storage.exists(path):
            raise PromotionError(f"{folder}: {name}: missing")
        if storage.sha256(path) != entry["sha256"]:
            raise PromotionError(f"{folder}: {name}: SHA-256 differs from {MANIFEST}")
    with tempfile.TemporaryDirectory(prefix="verify-") as local:
        for name in manifest["files"]:
            storage.copy_file(folder.join(name), Location.of(local).join(name))
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            AutoTokenizer.from_pretrained(local)
            AutoModelForSequenceClassification.from_pretrained(local)
        except Exception as exc:
            raise PromotionError(f"{folder}: the model does not load: {exc}") from None
    return manifest


def spec_hash(spec: SweepSpec) -> str:
    """SHA-256 of the sweep as it runs (where it logs and promotes left out)."""
    fields = spec.model_dump(mode="json", exclude_none=True, exclude={"wandb", "promote"})
    return hashlib.sha256(yaml.safe_dump(fields, sort_keys=True).encode()).hexdigest()


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("finetune-sweeps", "torch", "transformers", "ray", "pyarrow"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _log_artifact(spec: SweepSpec, best: Candidate, version: str, target: Location) -> None:
    """The promoted model as a W&B model artifact on its trial's run; W&B failing only warns."""
    import warnings

    from sweeps.wandb_stream import resolve_mode, run_id

    mode, _ = resolve_mode(spec.wandb.mode)
    if mode == "disabled":
        return
    try:
        import wandb

        run = wandb.init(
            id=run_id(spec.name, best.trial_id),
            resume="allow",
            project=spec.wandb.project,
            entity=spec.wandb.entity,
            group=spec.wandb.group or spec.name,
            mode=mode,
            dir=spec.wandb.dir,
            reinit="create_new",
            settings=wandb.Settings(init_timeout=spec.wandb.init_timeout_s, silent=True),
        )
        with tempfile.TemporaryDirectory(prefix="artifact-") as local:
            for name in storage.files(target):
                storage.copy_file(target.join(name), Location.of(local).join(name))
            artifact = wandb.Artifact(
                f"{spec.name}-model", type="model", metadata={"promoted_to": str(target)}
            )
            artifact.add_dir(local)
            run.log_artifact(artifact, aliases=["best", version])
            run.finish()
    except Exception as exc:  # W&B must never fail a promotion that already landed
        warnings.warn(f"W&B model artifact not logged: {exc}", stacklevel=2)
