"""The confirmation stage end to end on a tiny model: the search's top configurations retrain
with new seeds to their last step, the winner by mean is promoted from its best seed, and the
manifest holds every seed's scores. Expected values come from the results files, read here
with pyarrow, not through the code under test."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sweeps.running.runner import run_sweep
from sweeps.spec import SweepSpec, parse_spec
from tests.sweeps.running.test_sweep_e2e import tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

MAX_STEPS = 6


@pytest.fixture(scope="module")
def confirmed(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[SweepSpec, Path, dict[str, Any]]:
    """A 3-point grid (1-worker trials), then its top 2 retrained with 2 seeds each."""
    storage = tmp_path_factory.mktemp("confirm")
    raw = tiny_spec(tiny_model_dir, separable_files, storage)
    raw["name"] = "confirm-tiny"
    raw["job"]["data"]["test"] = separable_files["test"]
    raw["job"]["training"] |= {"max_steps": MAX_STEPS, "monitor": "val_loss"}
    raw["job"]["scaling"] = {"num_workers": 1}
    raw["search"] = {
        "method": "grid",
        "metric": "val_loss",
        "mode": "min",
        "space": {"optimizer.lr": {"grid": [1e-5, 3e-4, 3e-3]}},
        "confirm": {"top_k": 2, "seeds": 2},
    }
    raw["scheduler"] = {"name": "fifo"}
    raw["promote"] = {"to": str(storage / "models")}
    spec = parse_spec(raw)
    outcome = run_sweep(spec)
    assert outcome.promotion is not None
    manifest = json.loads((Path(outcome.promotion.location.path) / "manifest.json").read_text())
    return spec, storage, manifest


def best_loss_by_trial(path: Path) -> dict[str, tuple[dict[str, Any], float, int]]:
    """trial -> (its last row, its lowest val_loss, its last step), from a results file."""
    out: dict[str, tuple[dict[str, Any], float, int]] = {}
    for row in pq.read_table(path).to_pylist():
        _, best, step = out.get(row["trial_id"], (row, float("inf"), 0))
        out[row["trial_id"]] = (row, min(best, row["val_loss"]), max(step, row["step"]))
    return out


@pytest.mark.timeout(600)
def test_the_top_configurations_retrain_with_new_seeds_to_their_last_step(
    confirmed: tuple[SweepSpec, Path, dict[str, Any]],
) -> None:
    _, storage, _ = confirmed
    search = best_loss_by_trial(storage / "confirm-tiny" / "results.parquet")
    top2 = sorted(search.values(), key=lambda t: t[1])[:2]
    expected = {(t[0]["param.optimizer.lr"], seed) for t in top2 for seed in (1000, 1001)}
    runs = best_loss_by_trial(storage / "confirm-tiny.confirm" / "results.parquet")
    got = {(r["param.optimizer.lr"], r["param.training.seed"]) for r, _, _ in runs.values()}
    assert got == expected
    assert {step for _, _, step in runs.values()} == {MAX_STEPS}


@pytest.mark.timeout(600)
def test_the_promoted_model_is_the_best_mean_configurations_best_seed(
    confirmed: tuple[SweepSpec, Path, dict[str, Any]],
) -> None:
    _, storage, manifest = confirmed
    runs = best_loss_by_trial(storage / "confirm-tiny.confirm" / "results.parquet")
    by_lr: dict[float, list[tuple[str, float]]] = defaultdict(list)
    for trial_id, (row, loss, _) in runs.items():
        by_lr[row["param.optimizer.lr"]].append((trial_id, loss))
    winner_lr = min(by_lr, key=lambda lr: statistics.fmean(loss for _, loss in by_lr[lr]))
    best_seed_trial = min(by_lr[winner_lr], key=lambda t: t[1])[0]
    assert manifest["hyperparameters"]["optimizer.lr"] == winner_lr
    assert manifest["trial_id"] == best_seed_trial
    means = [c["mean"] for c in manifest["confirmation"]["candidates"]]
    assert means[0] == pytest.approx(statistics.fmean(loss for _, loss in by_lr[winner_lr]))


@pytest.mark.timeout(600)
def test_the_manifest_holds_every_seeds_validation_and_test_scores(
    confirmed: tuple[SweepSpec, Path, dict[str, Any]],
) -> None:
    _, _, manifest = confirmed
    winner = manifest["confirmation"]["winner"]
    assert [r["seed"] for r in winner["runs"]] == [1000, 1001]
    tests = [r["test"]["test_loss"] for r in winner["runs"]]
    vals = [r["val"] for r in winner["runs"]]
    assert winner["test_mean"] == pytest.approx(statistics.fmean(tests))
    assert winner["test_std"] == pytest.approx(statistics.stdev(tests))
    assert winner["val_mean"] == pytest.approx(statistics.fmean(vals))
    # The promoted seed's test score is the one the promotion itself measured.
    promoted = next(r for r in winner["runs"] if r["trial_id"] == manifest["trial_id"])
    assert promoted["test"]["test_loss"] == pytest.approx(manifest["test_metrics"]["test_loss"])


@pytest.mark.timeout(300)
def test_the_report_shows_the_confirmation_winner_first(
    confirmed: tuple[SweepSpec, Path, dict[str, Any]], tmp_path: Path
) -> None:
    from sweeps.results.confirmation import confirmation_summary
    from sweeps.results.queries import SweepResults
    from sweeps.results.report import write_report

    spec, _, manifest = confirmed
    rows = SweepResults.of(spec).rows()
    page = write_report(
        spec.name, spec.search, spec.scheduler, rows, tmp_path, confirmation_summary(spec)
    ).read_text()
    table = page.split("<h2>Confirmation over seeds")[1]
    # The promoted configuration (checked against the results files above) heads the table.
    winner_lr = manifest["hyperparameters"]["optimizer.lr"]
    first_row = table.split("<tr>")[2]
    assert f"optimizer.lr={winner_lr:.3g}" in first_row
