"""Resuming a sweep: the spec it started with is saved beside it, and a run of a different spec
under the same name is refused with the difference."""

from __future__ import annotations

import difflib

import yaml

from sweeps.errors import SpecError
from sweeps.spec import SweepSpec
from sweeps.store import storage
from sweeps.store.storage import Location

SPEC_FILE = "sweep_spec.yaml"
# Where the sweep logs and promotes may change between runs; what it runs may not.
_MAY_CHANGE = ("wandb", "promote")


def save_spec(folder: Location, spec: SweepSpec) -> None:
    """Keeps the spec a sweep started with in its folder."""
    storage.write_text(folder.join(SPEC_FILE), yaml.safe_dump(spec.as_mapping(), sort_keys=True))


def is_resume(folder: Location, spec: SweepSpec) -> bool:
    """True when `folder` holds this sweep already; raises if it holds a different spec."""
    saved = folder.join(SPEC_FILE)
    if not storage.exists(saved):
        return False
    # Both sides through the model, defaults left out: a field added to the spec since the
    # sweep started (at its default) is not a difference.
    before_spec = SweepSpec.model_validate(yaml.safe_load(storage.read_text(saved)))
    before, now = (
        yaml.safe_dump(
            s.model_dump(mode="json", exclude_defaults=True, exclude=set(_MAY_CHANGE)),
            sort_keys=True,
        )
        for s in (before_spec, spec)
    )
    if before != now:
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(True), now.splitlines(True), "existing sweep", "this spec"
            )
        )
        raise SpecError(
            f"a different sweep named {spec.name!r} exists at {folder}; use another name or "
            f"--restart to discard it. Difference:\n{diff}"
        )
    return True
