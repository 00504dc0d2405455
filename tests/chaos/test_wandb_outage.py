"""Chaos: W&B that accepts connections and never answers, and W&B that starts failing
mid-sweep (local servers reached through `WANDB_BASE_URL`). The sweep finishes within
`wandb.finish_timeout_s` + 30 s of the same sweep without W&B, with every result in
`results.parquet`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import wandb
from ray.tune import ResultGrid

from sweeps.results.queries import SweepResults
from sweeps.spec import SweepSpec
from tests.sweeps.cheap import ITERATIONS
from tests.sweeps.results.test_wandb_stream import cheap_sweep
from tests.wandb_server import FakeWandb, SilentServer

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

FINISH_TIMEOUT_S = 4.0
SLACK_S = 30.0


def assert_every_result_kept(spec: SweepSpec, grid: ResultGrid) -> None:
    assert len(grid) == 4 and not grid.errors
    table = SweepResults.of(spec).table()
    assert len(table) == 4 and all(r["status"] == "TERMINATED" for r in table)
    rows = SweepResults.of(spec).rows()
    assert len(rows) == 4 * ITERATIONS


def assert_the_process_can_exit() -> None:
    """W&B's exit work (what `atexit` runs) ends at once: the process is not held by it."""
    teardown = threading.Thread(target=wandb.teardown, daemon=True)
    teardown.start()
    teardown.join(15)
    assert not teardown.is_alive(), "W&B's service holds the process at exit"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Seconds of the same sweep with W&B off, in the same session: the bound's baseline."""
    return float(cheap_sweep(tmp_path_factory.mktemp("baseline"), {"mode": "disabled"})[2])


@pytest.mark.timeout(300)
def test_a_wandb_that_never_answers_costs_at_most_the_finish_timeout(
    baseline: float,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wandb.teardown()
    with SilentServer() as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        settings: dict[str, Any] = {"mode": "online", "dir": str(tmp_path / "wb")}
        settings |= {"init_timeout_s": 5, "finish_timeout_s": FINISH_TIMEOUT_S}
        spec, grid, seconds = cheap_sweep(tmp_path / "sweep", settings)
    assert_every_result_kept(spec, grid)
    assert seconds <= baseline + FINISH_TIMEOUT_S + SLACK_S, (seconds, baseline)
    assert "W&B" in caplog.text
    assert_the_process_can_exit()


@pytest.mark.timeout(300)
def test_a_wandb_that_fails_mid_sweep_costs_at_most_the_finish_timeout(
    baseline: float,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wandb.teardown()
    with FakeWandb(fail_after=12) as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_SWEEP_ID"):
            monkeypatch.delenv(name, raising=False)
        settings: dict[str, Any] = {"mode": "online", "dir": str(tmp_path / "wb")}
        settings |= {"init_timeout_s": 5, "finish_timeout_s": FINISH_TIMEOUT_S}
        spec, grid, seconds = cheap_sweep(tmp_path / "sweep", settings)
        assert server.of("upsertBucket"), "no run went online before the outage"
        assert server.requests > 12, "the outage never began"
        assert_every_result_kept(spec, grid)
        assert seconds <= baseline + FINISH_TIMEOUT_S + SLACK_S, (seconds, baseline)
        assert_the_process_can_exit()
