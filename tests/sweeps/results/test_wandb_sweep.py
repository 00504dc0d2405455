"""The sweep registered as a W&B sweep with a local controller, every trial's run attached to it:
checked on the GraphQL calls W&B's own client makes to a local server (`tests/wandb_server.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeps.results.wandb_sweep import (
    RECORD_FILE,
    SweepRegistration,
    wandb_parameter,
    wandb_sweep_config,
)
from sweeps.running.callbacks import wandb_streamer
from sweeps.spec import Param
from sweeps.store.storage import Location
from tests.sweeps.running.test_contract import SPACES, sweep_spec
from tests.wandb_server import ENTITY, SWEEP_ID, FakeWandb


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeWandb]:
    """W&B's client pointed at a fresh local server, online, with a key it accepts."""
    import wandb

    wandb.teardown()  # a W&B set up by an earlier test keeps that test's settings
    with FakeWandb() as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.url)
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        # `wandb.sweep` sets these for the process; the monkeypatch puts them back.
        for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_SWEEP_ID"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
        yield fake
        wandb.teardown()  # while the server is up: W&B's service flushes its runs to it


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"choice": ["a", "b"]}, {"values": ["a", "b"]}),
        ({"grid": [1, 2, 3]}, {"values": [1, 2, 3]}),
        ({"uniform": [0.0, 0.1]}, {"distribution": "uniform", "min": 0.0, "max": 0.1}),
        (
            {"uniform": [0.0, 0.1], "q": 0.01},
            {"distribution": "q_uniform", "min": 0.0, "max": 0.1, "q": 0.01},
        ),
        (
            {"loguniform": [1e-5, 1e-3]},
            {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3},
        ),
        ({"randint": [1, 8]}, {"distribution": "int_uniform", "min": 1, "max": 8}),
        ({"normal": [0.5, 0.1]}, {"distribution": "normal", "mu": 0.5, "sigma": 0.1}),
        (
            {"lognormal": [-9.0, 1.0], "q": 1e-5},
            {"distribution": "q_log_normal", "mu": -9.0, "sigma": 1.0, "q": 1e-5},
        ),
    ],
)
def test_each_distribution_has_its_wandb_form(ours: dict, theirs: dict) -> None:
    # W&B's names: https://docs.wandb.ai/models/sweeps/sweep-config-keys (distribution keys).
    assert wandb_parameter(Param.model_validate(ours)) == theirs


def test_the_sweep_config_names_method_metric_budget_asha_and_a_local_controller() -> None:
    spec = sweep_spec("tpe", "asha", SPACES["other"])
    assert wandb_sweep_config(spec) == {
        "name": "tpe-asha",
        "description": (
            "finetune-sweeps: tpe search, asha scheduler (Ray Tune chooses and stops the trials)"
        ),
        "method": "bayes",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {
            "optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
            "optimizer.momentum": {"distribution": "uniform", "min": 0.1, "max": 0.9},
            "optimizer.name": {"values": ["adamw", "sgd"]},
        },
        "run_cap": 4,
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3.0},
        "controller": {"type": "local"},
    }


@pytest.mark.parametrize(("mode", "registers"), [("online", True), ("offline", False)])
def test_only_an_online_sweep_registers_with_wandb(
    mode: str, registers: bool, tmp_path: Path
) -> None:
    spec = sweep_spec("grid", "fifo", SPACES["grid"])
    spec = spec.model_copy(update={"wandb": spec.wandb.model_copy(update={"mode": mode})})
    streamer = wandb_streamer(spec, None, Location.of(str(tmp_path)))
    assert streamer is not None
    assert (streamer.config.register_sweep is not None) == registers


def test_a_registration_is_recorded_and_a_resumed_sweep_reuses_it(
    server: FakeWandb, tmp_path: Path
) -> None:
    record = Location.of(str(tmp_path)).join(RECORD_FILE)
    config = wandb_sweep_config(sweep_spec("grid", "fifo", SPACES["grid"]))
    assert SweepRegistration(config, "proj", ENTITY, record)() == SWEEP_ID
    assert json.loads((tmp_path / RECORD_FILE).read_text()) == {
        "id": SWEEP_ID,
        "project": "proj",
        "entity": ENTITY,
    }
    assert SweepRegistration(config, "proj", ENTITY, record)() == SWEEP_ID  # the resume
    assert len(server.of("upsertSweep")) == 1
    # Another project is another W&B sweep (the positive control of the reuse above).
    SweepRegistration(config, "other", ENTITY, record)()
    assert len(server.of("upsertSweep")) == 2


@pytest.mark.integration
@pytest.mark.usefixtures("ray_session")
@pytest.mark.timeout(300)
def test_an_online_sweep_registers_and_every_trial_run_joins_it(
    server: FakeWandb, tmp_path: Path
) -> None:
    from tests.sweeps.results.test_wandb_stream import cheap_sweep

    spec, grid, _ = cheap_sweep(
        tmp_path, {"mode": "online", "project": "proj", "entity": ENTITY, "dir": str(tmp_path)}
    )
    assert len(grid) == 4 and not grid.errors

    (registered,) = server.of("upsertSweep")
    assert (registered.variables["projectName"], registered.variables["entityName"]) == (
        "proj",
        ENTITY,
    )
    config: dict[str, Any] = yaml.safe_load(registered.variables["config"])
    assert config["controller"] == {"type": "local"}
    assert config["method"] == "grid" and config["name"] == spec.name
    assert config["metric"] == {"name": "val_accuracy", "goal": "maximize"}
    assert config["parameters"] == {
        "optimizer.lr": {"values": [1e-5, 1e-3]},
        "training.seed": {"values": [1, 2]},
    }

    # A run's first upsertBucket creates it; later ones (config, summary) update it.
    first: dict[str, dict[str, Any]] = {}
    for call in server.of("upsertBucket"):
        first.setdefault(call.variables["name"], call.variables)
    trial_ids = {r.metrics["trial_id"] for r in grid}
    trials = {f"{spec.name}-{t}" for t in trial_ids}
    assert trials <= set(first), (trials, set(first))
    assert {first[run]["sweep"] for run in trials} == {SWEEP_ID}
    for run in trials:
        run_config = json.loads(first[run]["config"])
        assert {"optimizer.lr", "training.seed"} <= set(run_config)  # the sweep's parameters
    # The sweep-level summary run is not a trial: it stays out of W&B's sweep.
    assert first[f"{spec.name}-sweep"]["sweep"] is None
