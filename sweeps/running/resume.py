"""Resuming a sweep: the spec it started with is saved beside it, and a run of a different spec
under the same name is refused with the difference."""

from __future__ import annotations

import difflib
import json

import yaml

from sweeps.errors import SpecError, StorageError
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


def check_tune_state(folder: Location) -> None:
    """Raises, naming the file, when a state file Ray Tune resumes from (the `*.json` and `*.pkl`
    at the top of the sweep's folder) does not load.

    Tune's own resume catches such an error, starts a fresh experiment over half-restored
    counters and then waits for trials its searcher will never suggest (seen with a 0-byte
    searcher state a killed driver had left; `sweeps.store.atomic_local` now keeps Tune's
    copies whole, but a copy taken while Tune rewrote the file in place can still be torn).
    """
    for name in storage.files(folder, recursive=False):
        if not name.endswith((".json", ".pkl")):
            continue
        loc = folder.join(name)
        data = storage.read_bytes(loc)
        try:
            _load_either(data)
        except (ImportError, AttributeError) as exc:  # a class it names has moved
            raise StorageError(
                f"storage_path: {loc} names code this version of finetune-sweeps does not have "
                f"({type(exc).__name__}: {exc}): the sweep was started by another version, and "
                "its search cannot resume here. `sweeps run --restart` starts it over, or resume "
                "it with the version that started it."
            ) from None
        except Exception as exc:
            raise StorageError(
                f"storage_path: {loc} does not load ({type(exc).__name__}: {exc}); the sweep's "
                "Ray Tune state is damaged (a driver stopped while it was written), so its "
                "search cannot resume. `sweeps run --restart` starts the sweep over; its "
                "results so far stay in results.parquet until then."
            ) from None


def _load_either(data: bytes) -> None:
    """Loads a Tune state file as JSON or as a pickle (Tune writes some `.json` names with
    cloudpickle)."""
    import pickle

    if not data:
        raise ValueError("the file is empty")
    try:
        json.loads(data)
    except ValueError as not_json:
        try:
            pickle.loads(data)  # Tune's own state: Tune unpickles it next
        except (ImportError, AttributeError):
            raise
        except Exception as not_pickle:
            raise ValueError(f"neither JSON ({not_json}) nor a pickle ({not_pickle})") from None
