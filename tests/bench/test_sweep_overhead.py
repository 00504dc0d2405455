"""What `bench/sweep_overhead.py` says its baselines are, pinned without Ray.

The plain Tune function baseline is what a user writes for a one-worker job; its ratio means
something only while its trial does the product's trial's work (the same steps, rows,
evaluations and checkpoints, from the same job) under the settings a user could give it. These
tests run its trial body and the product's one-worker trial (`run_in_process`) on the bench's
own job and compare what each reported; the expected counts are worked out by hand from the
job's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray.train

import bench.sweep_overhead
from bench.sweep_overhead import job, run_as_tune_function, trial_job, tune_function_settings
from sweeps.running.trial import trial_resources
from trainables.config import parse_config
from trainables.in_process import run_in_process
from trainables.inputs import NO_INPUTS, TrialInputs
from trainables.prepared import prepare_tokens

#: 8 steps: the bench's job evaluates every 8 // 4 = 2 steps, each evaluation reported with a
#: checkpoint, at steps 2, 4, 6, 8; one worker of batch 16 trains 16 rows a step.
STEPS = 8
EVALUATED_AT = [2, 4, 6, 8]
ROWS_PER_STEP = 16
PARAMS = {"optimizer.lr": 3e-4}


class Reports:
    """Every report a trial made: metrics, and whether its checkpoint folder held the loop's
    training state when it was reported (Tune and Train copy it away during the call)."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.checkpointed: list[bool] = []

    def add(self, metrics: dict[str, Any], checkpoint: ray.train.Checkpoint | None) -> None:
        self.metrics.append(dict(metrics))
        held = checkpoint is not None and (Path(checkpoint.path) / "training_state.pt").is_file()
        self.checkpointed.append(held)

    def tune_report(self, metrics: dict[str, Any], *, checkpoint: Any = None) -> None:
        """`ray.tune.report`'s signature."""
        self.add(metrics, checkpoint)

    def column(self, key: str) -> list[Any]:
        return [m[key] for m in self.metrics]

    def rows(self) -> int:
        return round(sum(m["samples_per_second"] * m["step_seconds"] for m in self.metrics))


@pytest.fixture(scope="module")
def base(tiny_model_dir: str) -> dict[str, Any]:
    return job(tiny_model_dir, steps=STEPS, workers=1)


@pytest.fixture(scope="module")
def plain_tune(base: dict[str, Any]) -> Reports:
    """The plain Tune function baseline's trial body, its reports caught."""
    reports = Reports()
    run_as_tune_function(trial_job(base, PARAMS, "t1"), reports.tune_report, lambda: None)
    return reports


@pytest.fixture(scope="module")
def product(base: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Reports:
    """The product's one-worker trial on the same job: data prepared once by the sweep's
    driver, the loop run in the trial's process (what `make_trial_driver` does)."""
    from sweeps.spec import apply_params

    folder = tmp_path_factory.mktemp("product")
    cfg = parse_config(base)
    inputs = TrialInputs(prepared_data=prepare_tokens(cfg, str(folder / "data")))
    reports = Reports()
    trial = apply_params(cfg, PARAMS, name="t1")
    run_in_process(
        trial, inputs, run_name="t1", storage_path=str(folder / "train"), on_report=reports.add
    )
    return reports


def test_the_plain_tune_function_reports_at_every_evaluation_the_job_sets(
    plain_tune: Reports,
) -> None:
    assert plain_tune.column("step") == EVALUATED_AT


def test_the_plain_tune_function_reports_every_evaluation_with_a_checkpoint(
    plain_tune: Reports,
) -> None:
    assert plain_tune.checkpointed == [True] * len(EVALUATED_AT)
    assert all("val_loss" in m for m in plain_tune.metrics)


def test_the_plain_tune_function_trains_the_rows_of_the_jobs_steps(plain_tune: Reports) -> None:
    assert plain_tune.rows() == STEPS * ROWS_PER_STEP


def test_the_products_trial_reports_at_the_same_steps_with_a_checkpoint_each(
    product: Reports,
) -> None:
    assert product.column("step") == EVALUATED_AT
    assert product.checkpointed == [True] * len(EVALUATED_AT)
    assert product.rows() == STEPS * ROWS_PER_STEP


@pytest.mark.parametrize("metric", ["train_loss", "val_loss", "val_accuracy"])
def test_the_plain_tune_function_trains_and_evaluates_what_the_products_trial_does(
    plain_tune: Reports, product: Reports, metric: str
) -> None:
    # The same model, data (tokenized in the trial vs once by the driver), steps and seed:
    # the same losses, report by report.
    assert plain_tune.column(metric) == pytest.approx(product.column(metric), rel=1e-6)


def test_a_baseline_trial_tokenizes_its_data_itself(
    base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs: list[TrialInputs] = []

    def loop(job: Any, reporter: Any, given: TrialInputs = NO_INPUTS) -> None:
        inputs.append(given)

    monkeypatch.setattr(bench.sweep_overhead, "run_loop", loop)
    run_as_tune_function(trial_job(base, PARAMS, "t1"), lambda *_, **__: None, lambda: None)
    assert inputs == [NO_INPUTS]  # no tokens prepared ahead


def test_the_plain_tune_function_holds_the_resources_of_the_products_trial(
    base: dict[str, Any],
) -> None:
    ours = trial_resources(parse_config(base), True, {})(PARAMS).bundles
    resources = tune_function_settings(base, trials=4, tuned=True).resources
    assert [resources] == ours == [{"CPU": 2}]  # one worker holding the machine's 2 cores


@pytest.mark.parametrize(("baseline", "reuse"), [("tuned", True), ("defaults", False)])
def test_the_plain_tune_function_reuses_trial_actors_when_tuned(
    base: dict[str, Any], baseline: str, reuse: bool
) -> None:
    # Tune 2.60 defaults to False; reusing is the user's setting that helps (the product's
    # sweep of one-worker trials reuses them).
    settings = tune_function_settings(base, trials=4, tuned=baseline == "tuned")
    assert settings.tune_config.reuse_actors is reuse


def test_the_plain_tune_function_keeps_the_checkpoints_the_job_keeps(
    base: dict[str, Any],
) -> None:
    kept = tune_function_settings(base, trials=4, tuned=True).checkpoint_config
    assert (kept.num_to_keep, kept.checkpoint_score_attribute) == (1, "val_loss")
    assert kept.checkpoint_score_order == "min"
