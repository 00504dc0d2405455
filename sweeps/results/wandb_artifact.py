"""A promoted model as a W&B model artifact on its trial's run."""

from __future__ import annotations

import logging
import tempfile

from sweeps.results.wandb_runs import init_run, resolve_mode, run_id
from sweeps.spec import WandbSpec
from sweeps.store import storage
from sweeps.store.storage import Location

logger = logging.getLogger(__name__)


def log_model_artifact(
    spec: WandbSpec, *, sweep: str, trial_id: str, version: str, folder: Location
) -> None:
    """A promoted model as a W&B model artifact on its trial's run; W&B failing only warns."""
    mode, _ = resolve_mode(spec.mode)
    if mode == "disabled":
        return
    try:
        import wandb

        run = init_run(spec, sweep, run_id(sweep, trial_id), mode, spec.dir)
        with tempfile.TemporaryDirectory(prefix="artifact-") as local:
            for name in storage.files(folder):
                storage.copy_file(folder.join(name), Location.of(local).join(name))
            artifact = wandb.Artifact(
                f"{sweep}-model", type="model", metadata={"promoted_to": str(folder)}
            )
            artifact.add_dir(local)
            run.log_artifact(artifact, aliases=["best", version])
            run.finish()
    except Exception as exc:  # W&B must never fail a promotion that already landed
        logger.warning("W&B model artifact not logged: %s", exc)
