"""The live progress line counts trials truthfully and names the best so far."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from sweeps.results.progress import SweepProgress
from sweeps.running.tuner import build_tuner
from tests.sweeps.cheap import ITERATIONS, cheap_trainable
from tests.sweeps.running.test_contract import SPACES, sweep_spec
from trainables.objective import Objective

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


class Planned:
    def __call__(self, config: dict) -> int:
        return ITERATIONS


@pytest.mark.timeout(300)
def test_progress_counts_done_and_early_stopped_trials_and_the_best(tmp_path: Path) -> None:
    spec = sweep_spec("random", "asha", SPACES["other"])
    spec = spec.model_copy(update={"search": spec.search.model_copy(update={"num_samples": 8})})
    out = io.StringIO()
    progress = SweepProgress(
        spec.name, Objective("val_accuracy", "max"), 8, planned=Planned(), stream=out, every_s=0
    )
    grid = build_tuner(
        spec,
        cheap_trainable,
        max_t=ITERATIONS,
        max_concurrent=2,
        storage=str(tmp_path),
        callbacks=[progress],
        quiet=True,
    ).fit()

    last = out.getvalue().strip().splitlines()[-1]
    early = sum(1 for r in grid if r.metrics["training_iteration"] < ITERATIONS)
    assert early > 0
    assert f"0 running, 8 done ({early} stopped early), 0 errored, 0 to go" in last
    best = max(v for r in grid for v in r.metrics_dataframe["val_accuracy"].tolist())
    match = re.search(r"best val_accuracy (\S+) at trial (\S+)", last)
    assert match and float(match[1]) == pytest.approx(best, rel=1e-3)
    assert match[2] == grid.get_best_result("val_accuracy", "max", scope="all").metrics["trial_id"]
