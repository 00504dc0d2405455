"""Every private W&B name the project uses, behind this one door (checked against wandb
`CHECKED_WITH`): each is listed in `PRIVATE_NAMES` and resolved through `resolve`, so a release
that moves one fails naming it (`tests/sweeps/results/test_wandb_compat.py`)."""

from __future__ import annotations

from typing import Any

from trainables.compat_names import resolve_name

#: The wandb release every name below was checked against.
CHECKED_WITH = "0.31.0"

_SETUP = "wandb.sdk.wandb_setup:_singleton"

#: Every private name used here, as `module:attribute.path`.
PRIVATE_NAMES = (
    _SETUP,
    "wandb.sdk.wandb_setup:_WandbSetup._connection",
    "wandb.sdk.lib.service.service_connection:ServiceConnection._proc",
    "wandb.sdk.lib.service.service_process:ServiceProcess._process",
)


def resolve(name: str) -> Any:
    """The object `name` points to in the installed wandb (None for an attribute set on
    instances).

    Raises:
        CompatError: naming `name` and the installed wandb, when it is not there.
    """
    return resolve_name(
        name, library="wandb", checked_with=CHECKED_WITH, home="sweeps/results/wandb_compat.py"
    )


def current_setup() -> Any:
    """This process's W&B setup (its service connection), or None before W&B is used. Taken
    before `wandb.teardown`, which forgets it."""
    for name in PRIVATE_NAMES:
        resolve(name)
    return resolve(_SETUP)


def service_process(setup: Any) -> Any:
    """The `subprocess.Popen` of the W&B service that `setup` (`current_setup`) started, or None
    when it started none. W&B exposes no way to stop its service but a teardown that waits for
    it without a limit."""
    connection = getattr(setup, "_connection", None)
    return getattr(getattr(connection, "_proc", None), "_process", None)
