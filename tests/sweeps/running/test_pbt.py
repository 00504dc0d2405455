"""PBT end to end on a tiny deterministic model with one-worker trials (the loop in the trial's
process, as on a laptop): an exploit continues exactly from the donor's checkpoint, and the
lineage lands in the results file, the report, W&B and the promoted model's manifest. A 2-rank
trial hands Tune every checkpoint through its `TorchTrainer` the same way."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import ray.tune
import torch

from sweeps.results.queries import SweepResults
from sweeps.results.report import write_report
from sweeps.results.results_file import params_of
from sweeps.running.promotion import promote_best
from sweeps.running.runner import run_sweep
from sweeps.running.trial import make_trial_driver, trial_resources
from sweeps.spec import SweepSpec, apply_params, parse_spec
from sweeps.store.storage import Location
from tests.sweeps.running.test_sweep_e2e import tiny_spec
from tests.wandb_files import offline_runs
from trainables.in_process import run_in_process
from trainables.inputs import TrialInputs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

EVAL_EVERY = 10
# Long enough that the two trials' training overlaps despite their start-up skew on 2 cores
# (async PBT compares only trials that are running: with 40 steps one trial here had ended
# before the other's first report, and no exploit happened); twice that, since every report
# of the diverging trial is an exploit, and each exploit restarts a trial.
MAX_STEPS = 80


@pytest.fixture(scope="module")
def pbt_sweep(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[SweepSpec, Path]:
    """Two one-worker trials (a CPU each, so both run at once), PBT every evaluation."""
    storage = tmp_path_factory.mktemp("pbt")
    raw = tiny_spec(tiny_model_dir, separable_files, storage)
    raw["name"] = "pbt-tiny"
    raw["job"]["training"] |= {
        "max_steps": MAX_STEPS,
        "eval_every": EVAL_EVERY,
        "monitor": "val_loss",
        "checkpoints_to_keep": None,  # the replays below start from any report's checkpoint
    }
    raw["job"]["schedule"] = {"name": "constant"}  # an LR that does not depend on max_steps
    raw["job"]["scaling"] = {"num_workers": 1, "cpus_per_worker": 1}
    raw["search"] = {
        "method": "grid",
        "metric": "val_loss",
        "mode": "min",
        # PBT's explore draws from the search's seed. With seed 0 the first exploit explored to
        # lr 0.3 (the grid's neighbour of 1e-5), and every start then diverged alike: the replay
        # from the copy's own checkpoint matched the copy bit for bit, failing the control about
        # 1 run in 5. Seed 4 keeps the good rate in its first six explores (computed with the
        # Explorer on this space), so the copy learns from the donor's state.
        "seed": 4,
        "space": {
            # The tiny model barely learns in these steps, so two sane rates score within noise of
            # each other and PBT's quantiles flip at random: a trial that was in the lower half
            # at its own last report has no checkpoint to give, and a run with no exploit at
            # all happened on CI. An lr of 0.3 diverges at every report, so the 1e-5 trial is
            # the upper half throughout and every report of the other exploits it.
            "optimizer.lr": {"grid": [1e-5, 0.3]},
            "optimizer.weight_decay": {"grid": [0.0]},
        },
    }
    raw["scheduler"] = {"name": "pbt", "perturbation_interval": 1, "quantile": 0.5}
    raw["wandb"] = {"mode": "offline", "dir": str(storage / "wb")}
    spec = parse_spec(raw)
    outcome = run_sweep(spec)
    assert outcome.finished
    return spec, storage


def first_exploit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    exploited = sorted((r for r in rows if r.get("exploited_from")), key=lambda r: r["timestamp"])
    assert exploited, "no trial exploited another"
    return exploited[0]


def replay(spec: SweepSpec, params: dict, start: str, until: int, folder: Path) -> dict:
    """The job with `params`, started outside the sweep from checkpoint `start`, to `until`,
    run as the sweep ran its one-worker trials: the loop in the calling process."""
    job = apply_params(spec.job, params | {"training.max_steps": until}, name="replay")
    inputs = TrialInputs(start_from=start)
    reports: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as Ray runs a 1-CPU trial (OMP_NUM_THREADS=1)
    try:
        run_in_process(
            job,
            inputs,
            run_name=folder.name,
            storage_path=str(folder.parent),
            on_report=lambda metrics, _checkpoint: reports.append(metrics),
        )
    finally:
        torch.set_num_threads(threads)
    assert reports[-1]["step"] == until
    return reports[-1]


@pytest.mark.timeout(600)
def test_an_exploit_continues_exactly_from_the_donors_checkpoint(
    pbt_sweep: tuple[SweepSpec, Path], tmp_path: Path
) -> None:
    spec, _ = pbt_sweep
    rows = SweepResults.of(spec).rows()
    copy = first_exploit(rows)
    donor = next(
        r
        for r in rows
        if r["trial_id"] == copy["exploited_from"] and r["step"] == copy["exploit_step"]
    )
    params = params_of(copy)
    again = replay(spec, params, donor["checkpoint_path"], copy["step"], tmp_path / "donor")
    assert again["val_loss"] == pytest.approx(copy["val_loss"], rel=1e-5)
    assert again["train_loss"] == pytest.approx(copy["train_loss"], rel=1e-5, nan_ok=True)
    # Control: from the copy's own checkpoint at or before the donor's step (its own state, not
    # the donor's), the same replay lands elsewhere, so the match above is the donor's state and
    # nothing else. Not simply its latest: a copy that ran ahead of its donor (start-up skew) had
    # checkpoints past the copy's step, and a replay from there ends where it starts.
    own = max(
        (
            r
            for r in rows
            if r["trial_id"] == copy["trial_id"]
            and not r.get("generation")
            and r["step"] <= copy["exploit_step"]
        ),
        key=lambda r: r["step"],
    )
    other = replay(spec, params, own["checkpoint_path"], copy["step"], tmp_path / "own")
    assert other["val_loss"] != pytest.approx(copy["val_loss"], rel=1e-5)


@pytest.mark.timeout(300)
def test_every_trial_ends_at_its_last_step_and_the_lineage_is_in_the_results(
    pbt_sweep: tuple[SweepSpec, Path],
) -> None:
    spec, _ = pbt_sweep
    rows = SweepResults.of(spec).rows()
    assert {r["trial_status"] for r in rows} == {"TERMINATED"}
    for trial_id in {r["trial_id"] for r in rows}:
        assert max(r["step"] for r in rows if r["trial_id"] == trial_id) == MAX_STEPS
    copy = first_exploit(rows)
    assert copy["exploited_from"] != copy["trial_id"] and copy["generation"] == 1
    # The next evaluation after the copy; a copy of a donor that had ended (asynchronous PBT
    # with a trial that started late) reports the donor's final model once, at its step.
    assert copy["step"] == min(copy["exploit_step"] + EVAL_EVERY, MAX_STEPS)
    # Explored values stay within the space: the lr grid, the one weight decay.
    assert {r["param.optimizer.lr"] for r in rows} <= {1e-5, 0.3}
    assert {r["param.optimizer.weight_decay"] for r in rows} == {0.0}


@pytest.mark.timeout(300)
def test_the_report_draws_the_lineage(pbt_sweep: tuple[SweepSpec, Path], tmp_path: Path) -> None:
    import matplotlib.image

    spec, _ = pbt_sweep
    rows = SweepResults.of(spec).rows()
    page = write_report(spec.name, spec.search, spec.scheduler, rows, tmp_path).read_text()
    image = matplotlib.image.imread(tmp_path / "pbt_lineage.png")
    assert image.ndim == 3 and image.std() > 0.01
    copy = first_exploit(rows)
    assert "Exploits (PBT)" in page and 'alt="pbt_lineage"' in page
    cells = f"<td>{copy['trial_id']}</td><td>{copy['exploited_from']}</td>"
    assert cells + f"<td>{copy['exploit_step']}</td>" in page


@pytest.mark.timeout(300)
def test_each_w_and_b_run_logs_its_exploits_at_their_step(
    pbt_sweep: tuple[SweepSpec, Path],
) -> None:
    spec, storage = pbt_sweep
    rows = SweepResults.of(spec).rows()
    copy = first_exploit(rows)
    runs = {r.config.get("trial_id"): r for r in offline_runs(storage / "wb")}
    history = runs[copy["trial_id"]].history
    marked = [h for h in history if h.get("exploited_from")]
    assert marked and marked[0]["exploited_from"] == copy["exploited_from"]
    assert marked[0]["step"] == copy["step"]  # the loop's step of the first row after it
    steps = [h["_step"] for h in history]
    assert steps == sorted(set(steps))  # strictly increasing


@pytest.mark.timeout(300)
def test_a_promoted_pbt_model_holds_its_hyperparameter_schedule(
    pbt_sweep: tuple[SweepSpec, Path], tmp_path: Path
) -> None:
    spec, _ = pbt_sweep
    done = promote_best(spec, to=str(tmp_path / "models"))
    assert done is not None
    manifest = json.loads((Path(done.location.path) / "manifest.json").read_text())
    segments = manifest["hyperparameter_schedule"]
    best = SweepResults.of(spec).best()
    assert best is not None and segments[-1]["trial_id"] == best.trial_id
    assert segments[-1]["params"] == manifest["hyperparameters"] == best.params
    assert segments[0]["from_step"] == 0
    assert [s["from_step"] for s in segments] == sorted(s["from_step"] for s in segments)
    rows = SweepResults.of(spec).rows()
    # Each later segment starts where its trial copied the one before it.
    for before, after in itertools.pairwise(segments):
        assert any(
            r["trial_id"] == after["trial_id"]
            and r.get("exploited_from") == before["trial_id"]
            and r["exploit_step"] == after["from_step"]
            for r in rows
        )


@pytest.mark.timeout(300)
def test_the_pbt_example_runs_as_a_smoke_test(tiny_model_dir: str, tmp_path: Path) -> None:
    from sweeps.cli import main

    example = Path(__file__).resolve().parents[3] / "sweeps" / "examples" / "pbt.yaml"
    status = main(
        [
            "run",
            str(example),
            "--smoke-test",
            "--set",
            f"storage_path={tmp_path}",
            "--set",
            f"promote.to={tmp_path / 'models'}",
            # The tiny model stands in for the embedded one: the example's path, not its model.
            "--set",
            f"job.model.name_or_path={tiny_model_dir}",
        ]
    )
    assert status == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "pbt" / "results.parquet").to_pylist()
    last = {r["trial_id"]: r["trial_status"] for r in rows}
    assert sorted(last.values()) == ["TERMINATED", "TERMINATED"]
    assert (tmp_path / "models" / "pbt" / "v1" / "manifest.json").exists()


@pytest.mark.timeout(300)
def test_a_run_started_from_a_final_checkpoint_reports_it_once(
    pbt_sweep: tuple[SweepSpec, Path], tmp_path: Path
) -> None:
    # What an asynchronous exploit of a trial that had already ended starts from.
    spec, _ = pbt_sweep
    rows = SweepResults.of(spec).rows()
    final = next(r for r in rows if r["step"] == MAX_STEPS)
    params = params_of(final)
    again = replay(spec, params, final["checkpoint_path"], MAX_STEPS, tmp_path / "final")
    assert again["val_loss"] == pytest.approx(final["val_loss"], rel=1e-5)


@pytest.mark.timeout(300)
def test_a_two_rank_trial_hands_tune_every_checkpoint_marked_with_its_step(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    # What PBT exploits, from a trial that runs a TorchTrainer (reports relayed from Train).
    raw = tiny_spec(tiny_model_dir, separable_files, tmp_path)
    raw["job"]["training"] |= {"max_steps": 4, "eval_every": 2, "checkpoints_to_keep": None}
    raw["job"]["scaling"] = {"num_workers": 2, "cpus_per_worker": 1}
    job = parse_spec(raw).job
    folder = Location.of(str(tmp_path))
    driver = make_trial_driver(job, folder, checkpoints_to_tune=True, in_process=True)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(driver, trial_resources(job, True, {})),
        run_config=ray.tune.RunConfig(name="relay", storage_path=str(tmp_path)),
    )
    (result,) = tuner.fit()

    assert result.error is None
    steps = [int(m["step"]) for m in result.metrics_dataframe.to_dict("records")]
    assert steps == [2, 4]
    held = sorted(c.get_metadata()["sweeps_origin"]["step"] for c, _ in result.best_checkpoints)
    assert held == steps
