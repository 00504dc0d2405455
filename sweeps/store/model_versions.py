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
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sweeps.errors import PromotionError
from sweeps.store import storage
from sweeps.store.storage import Location
from sweeps.store.trivial import compare, manifest_entry
from trainables.config import FinetuneConfig
from trainables.objective import Objective

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LATEST = "latest"
MANIFEST_FORMAT = 1
_VERSION = re.compile(r"^v(\d+)$")
# Checkpoint files that only resume training; a promoted model leaves them behind.
_TRAINING_ONLY = re.compile(r"^(training_state\.pt|rng_rank\d+\.pt)$|(^|/)\.")


class PromotedTrial(Protocol):
    """What promotion reads of the trial it promotes (`sweeps.results.queries.BestTrial`)."""

    @property
    def trial_id(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def metrics(self) -> dict[str, float]: ...
    @property
    def checkpoint(self) -> Location: ...
    @property
    def schedule(self) -> list[dict[str, Any]] | None: ...
    @property
    def confirmation(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: the version folder and whether this call wrote it."""

    version: str
    location: Location
    manifest: dict[str, Any]
    created: bool


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
    best: PromotedTrial,
    job: FinetuneConfig,
    to: str,
    *,
    sweep: str,
    objective: Objective,
    spec_sha256: str,
    on_file_copied: Callable[[str], None] | None = None,
    trivial: dict[str, Any] | None = None,
) -> Promotion:
    """Copies `best`'s checkpoint to `<to>/<sweep>/v<N>` with a manifest; a checkpoint that a
    version already holds is not copied again.

    Args:
        best: The trial and checkpoint to promote.
        job: That trial's job (its test split is evaluated on the promoted weights).
        to: Destination root URI or path.
        sweep: The sweep's name.
        objective: What `best` was chosen by (recorded in the manifest).
        spec_sha256: The sweep spec's hash (recorded in the manifest).
        on_file_copied: Called with each file's name after it is written (a test's fault).
        trivial: The sweep's trivial predictor record (`sweeps.store.trivial`): recorded in
            the manifest with its comparison to `best`; a `best` that does not beat it by more
            than the validation noise is promoted with a warning naming both figures.

    Raises:
        PromotionError: naming the destination when it cannot be read or written.
    """
    comparison = compare(trivial, objective, best.metrics.get(objective.metric))
    if comparison is not None and not comparison.beats:
        logger.warning("warning: promoting trial %s, but %s", best.trial_id, comparison.message())
    root = Location.of(to).join(sweep)
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
    provenance = {
        "sweep": sweep,
        "selected_by": {
            "metric": objective.metric,
            "mode": objective.mode,
            "value": best.metrics.get(objective.metric),
        },
        "spec_sha256": spec_sha256,
    }
    if (trivial_entry := manifest_entry(trivial, comparison)) is not None:
        provenance["trivial_predictor"] = trivial_entry
    try:
        manifest = _copy_version(best, job, provenance, target, on_file_copied)
        _point_latest(root, version)
    except OSError as exc:
        raise PromotionError(f"promote.to: cannot write {target}: {exc}") from None
    return Promotion(version, target, manifest, created=True)


def _copy_version(
    best: PromotedTrial,
    job: FinetuneConfig,
    provenance: dict[str, Any],
    target: Location,
    on_file_copied: Callable[[str], None] | None,
) -> dict[str, Any]:
    # Whatever an interrupted earlier copy left here is rewritten from scratch.
    storage.delete(target)
    names = _model_files(best.checkpoint)
    with tempfile.TemporaryDirectory(prefix="promote-") as local:
        hashes = {
            name: storage.copy_file(best.checkpoint.join(name), Location.of(local).join(name))
            for name in names
        }
        # Imported here: torch and transformers load only when a promotion happens.
        from trainables.evaluation import evaluate_folder

        test_metrics = evaluate_folder(job, local)
        for name in names:
            written = storage.copy_file(Location.of(local).join(name), target.join(name))
            if written != hashes[name]:
                raise PromotionError(f"{target.join(name)}: changed while copying")
            if on_file_copied:
                on_file_copied(name)
    manifest = {
        "format": MANIFEST_FORMAT,
        **provenance,
        "version": target.name,
        "trial_id": best.trial_id,
        "source": {"checkpoint": str(best.checkpoint)},
        "hyperparameters": best.params,
        **({"hyperparameter_schedule": best.schedule} if best.schedule else {}),
        **({"confirmation": best.confirmation} if best.confirmation else {}),
        "metrics": best.metrics,
        "test_metrics": test_metrics,
        "model": _model_entry(job),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {name: {"sha256": digest} for name, digest in sorted(hashes.items())},
    }
    storage.write_text(target.join(MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _model_entry(job: FinetuneConfig) -> dict[str, Any]:
    """What the promoted model is: task, backbone, fine-tuning method (with LoRA's
    parameters; a LoRA model's adapter files are in `adapter/`)."""
    model = job.model
    entry: dict[str, Any] = {"task": job.task, "backbone": model.name_or_path}
    entry["method"] = model.method
    if model.method == "lora":
        entry["lora"] = model.lora.model_dump(mode="json") | {"adapter_folder": "adapter"}
    return entry


def _model_files(checkpoint: Location) -> list[str]:
    names = [n for n in storage.files(checkpoint) if not _TRAINING_ONLY.search(n)]
    if not names:
        raise PromotionError(f"{checkpoint}: the checkpoint holds no model files")
    return names


def evaluate_checkpoint(checkpoint: Location, job: FinetuneConfig) -> dict[str, float] | None:
    """Test-split metrics of the model in a checkpoint (copied to a local temporary folder);
    None when the job's data has no test split."""
    from trainables.evaluation import evaluate_folder

    with tempfile.TemporaryDirectory(prefix="evaluate-") as local:
        for name in _model_files(checkpoint):
            storage.copy_file(checkpoint.join(name), Location.of(local).join(name))
        return evaluate_folder(job, local)


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


def verify(uri: str, on_answer: Callable[[Any, str], None] | None = None) -> dict[str, Any]:
    """Re-checks every file's SHA-256 against the manifest and loads the model; returns the
    manifest. `on_answer(input, answer)` gets the model's answer to the one input it is run
    on (a sentence's class, or its words' tags).

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
        from trainables.tasks.saved import load_classifier, smoke_input

        try:
            # Loaded as the ecosystem loads it, and classifying one input end to end.
            given = smoke_input(local)
            answer = load_classifier(local)(given)
        except Exception as exc:
            raise PromotionError(f"{folder}: the model does not load: {exc}") from None
    if on_answer is not None:
        on_answer(given, answer)
    return manifest


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("finetune-sweeps", "torch", "transformers", "timm", "peft", "ray", "pyarrow"):
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
