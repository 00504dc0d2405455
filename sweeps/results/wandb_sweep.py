"""The sweep as a W&B sweep with a local controller, so W&B's own sweep page (its parallel
coordinates and parameter-importance panels) shows every trial.

W&B does not choose the trials: Ray Tune does, and W&B's sweep is registered with
`controller: {type: local}`, the way W&B marks a sweep run by a controller outside its servers.
Every trial's run carries the sweep's id (`wandb.init(settings=Settings(sweep_id=...))`), which
W&B records on the run (`upsertBucket(sweep: ...)`). The id is kept beside the sweep's results
(`wandb_sweep.json`), so a resumed sweep goes on filling the same W&B sweep. Offline runs have
no sweep: W&B assigns sweep ids on its server.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from sweeps.spec import Param, SweepSpec
from sweeps.store import storage
from sweeps.store.storage import Location

logger = logging.getLogger(__name__)

#: Where a sweep's W&B sweep id is kept, inside the sweep's folder.
RECORD_FILE = "wandb_sweep.json"

# W&B's sweep methods. Its `bayes` is a Gaussian-process search; TPE is a Bayesian
# optimisation too, and W&B has no name of its own for it (the description says which ran).
_METHODS = {"grid": "grid", "random": "random", "gp": "bayes", "tpe": "bayes"}
_RANGES = {
    "uniform": ("uniform", "q_uniform", ("min", "max")),
    "loguniform": ("log_uniform_values", "q_log_uniform_values", ("min", "max")),
    "randint": ("int_uniform", "q_uniform", ("min", "max")),
    "normal": ("normal", "q_normal", ("mu", "sigma")),
    "lognormal": ("log_normal", "q_log_normal", ("mu", "sigma")),
}


def wandb_parameter(param: Param) -> dict[str, Any]:
    """One search-space parameter in W&B's sweep format (`when:` conditions have no W&B form:
    the parameter is listed with its distribution)."""
    if param.kind in ("choice", "grid"):
        return {"values": list(param.values())}
    plain, quantized, (low_key, high_key) = _RANGES[param.kind]
    low, high = getattr(param, param.kind)
    out = {"distribution": quantized if param.q else plain, low_key: low, high_key: high}
    return out | ({"q": param.q} if param.q else {})


def wandb_sweep_config(spec: SweepSpec) -> dict[str, Any]:
    """The sweep's W&B sweep config: method, metric, parameters, budget, local controller."""
    config: dict[str, Any] = {
        "name": spec.name,
        "description": (
            f"finetune-sweeps: {spec.search.method} search, {spec.scheduler.name} scheduler "
            "(Ray Tune chooses and stops the trials)"
        ),
        "method": _METHODS[spec.search.method],
        "metric": {
            "name": spec.search.metric,
            "goal": "maximize" if spec.search.mode == "max" else "minimize",
        },
        "parameters": {key: wandb_parameter(p) for key, p in sorted(spec.search.space.items())},
        "run_cap": spec.trials,
        "controller": {"type": "local"},
    }
    if spec.scheduler.name == "asha":
        # How W&B itself names asynchronous successive halving (see sweeps/spec/wandb_format).
        config["early_terminate"] = {
            "type": "hyperband",
            "min_iter": spec.scheduler.grace_period,
            "eta": spec.scheduler.reduction_factor,
        }
    return config


@dataclass(frozen=True)
class SweepRegistration:
    """Registers the sweep with W&B once and returns its id (picklable: Tune saves callbacks).

    Attributes:
        config: The W&B sweep config (`wandb_sweep_config`).
        project: The W&B project of the sweep and its runs.
        entity: The W&B entity, or None for the API key's default.
        record: Where the id is kept (`<sweep folder>/wandb_sweep.json`), so a resumed sweep
            keeps its W&B sweep.
    """

    config: dict[str, Any]
    project: str
    entity: str | None
    record: Location

    def __call__(self) -> str:
        """The W&B sweep id: the recorded one, else a new registration (`wandb.sweep`).

        Raises:
            Exception: whatever W&B raises when it cannot register (unreachable, refused).
        """
        if storage.exists(self.record):
            kept = json.loads(storage.read_text(self.record))
            if (kept.get("project"), kept.get("entity")) == (self.project, self.entity):
                return str(kept["id"])
        import wandb

        # `wandb.sweep` prints the id and URL: the CLI prints what the sweep says, not W&B.
        with contextlib.redirect_stdout(io.StringIO()):
            sweep_id = wandb.sweep(self.config, entity=self.entity, project=self.project)
        record = {"id": sweep_id, "project": self.project, "entity": self.entity}
        storage.write_text(self.record, json.dumps(record, sort_keys=True))
        logger.info("W&B sweep %s registered (project %s)", sweep_id, self.project)
        return sweep_id
