"""Every private W&B name the project uses resolves in the installed wandb
(`sweeps/results/wandb_compat.py`), and one that a release moved fails naming it."""

from __future__ import annotations

import importlib.metadata

import pytest

from sweeps.results import wandb_compat
from trainables.compat_names import CompatError


@pytest.mark.parametrize("name", wandb_compat.PRIVATE_NAMES)
def test_every_private_wandb_name_resolves_in_the_installed_wandb(name: str) -> None:
    wandb_compat.resolve(name)


@pytest.mark.parametrize(
    ("planted", "named"),
    [
        ("wandb.sdk.wandb_setup:_singletons", "wandb.sdk.wandb_setup._singletons: not found"),
        (
            "wandb.sdk.lib.service.service_connection:ServiceConnection._process",
            "ServiceConnection._process: not found",
        ),
    ],
)
def test_a_renamed_wandb_symbol_fails_naming_it(planted: str, named: str) -> None:
    # The positive control of the test above (the second name is one of W&B's, on another
    # class: instance attributes are told apart too).
    with pytest.raises(CompatError) as caught:
        wandb_compat.resolve(planted)
    assert named in str(caught.value)
    assert f"wandb {importlib.metadata.version('wandb')}" in str(caught.value)


def test_no_setup_has_no_service_process() -> None:
    assert wandb_compat.service_process(None) is None
