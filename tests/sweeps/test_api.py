"""The Python API: `sweeps.run` on a tiny real sweep returns what its results file holds, and
`sweeps.load` reads the same sweep back; `import sweeps` stays cheap."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

import sweeps
from sweeps.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
integration = pytest.mark.integration


@pytest.fixture(scope="module")
def api_sweep(
    ray_session: None,
    tiny_model_dir: str,
    separable_files: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[sweeps.Sweep, Path]:
    """One 2-trial sweep through `sweeps.run(path)`, promoted; shared by the tests below."""
    tmp = tmp_path_factory.mktemp("api")
    raw = {
        "name": "api",
        "storage_path": str(tmp / "sweeps"),
        "job": {
            "model": {"name_or_path": tiny_model_dir},
            "data": {
                "train": separable_files["train"],
                "validation": separable_files["validation"],
                "text_column": "sentence",
                "label_column": "sentiment",
                "max_length": 32,
            },
            "training": {"batch_size": 16, "max_steps": 4, "eval_every": 2},
        },
        "search": {
            "method": "random",
            "metric": "val_accuracy",
            "mode": "max",
            "num_samples": 2,
            "seed": 3,
            "space": {"optimizer.lr": {"loguniform": [1e-5, 5e-3]}},
        },
        "wandb": {"mode": "disabled"},
        "promote": {"to": str(tmp / "models")},
    }
    path = tmp / "api.yaml"
    path.write_text(yaml.safe_dump(raw))
    return sweeps.run(path), path


def file_rows(sweep: sweeps.Sweep) -> list[dict[str, Any]]:
    """The results file read with pyarrow alone."""
    return pq.read_table(Path(sweep.folder) / "results.parquet").to_pylist()


def same(a: object, b: object) -> bool:
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (a, b)]
    return all(missing) or (not any(missing) and a == b)


@integration
def test_run_returns_the_rows_of_results_parquet_as_a_dataframe(
    api_sweep: tuple[sweeps.Sweep, Path],
) -> None:
    sweep, _ = api_sweep
    expected = file_rows(sweep)
    assert len(expected) == 4  # 2 trials x 2 evaluations (4 steps, one every 2)
    assert list(sweep.trials.columns) == list(expected[0])
    got = sweep.trials.to_dict("records")
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        unequal = [k for k in theirs if not same(mine[k], theirs[k])]
        assert not unequal, (unequal, mine, theirs)


@integration
def test_run_returns_the_best_report_of_the_file(api_sweep: tuple[sweeps.Sweep, Path]) -> None:
    sweep, _ = api_sweep
    rows = file_rows(sweep)
    top = max(r["val_accuracy"] for r in rows)
    assert sweep.best is not None
    assert sweep.best.metrics["val_accuracy"] == top
    assert sweep.best.trial_id in {r["trial_id"] for r in rows if r["val_accuracy"] == top}
    assert sweep.finished
    assert sorted(sweep.table["trial_id"]) == sorted({r["trial_id"] for r in rows})


@integration
def test_run_returns_where_the_best_trials_model_was_promoted(
    api_sweep: tuple[sweeps.Sweep, Path],
) -> None:
    sweep, path = api_sweep
    assert sweep.promoted is not None and sweep.best is not None
    promoted = Path(sweep.promoted)
    assert promoted.parent == path.parent / "models" / "api"
    manifest = json.loads((promoted / "manifest.json").read_text())
    assert manifest["trial_id"] == sweep.best.trial_id


@integration
def test_load_of_the_sweep_folder_gives_the_same_best_trial(
    api_sweep: tuple[sweeps.Sweep, Path],
) -> None:
    sweep, _ = api_sweep
    loaded = sweeps.load(sweep.folder)
    assert loaded.best == sweep.best
    assert loaded.promoted == sweep.promoted
    assert loaded.trials.equals(sweep.trials)


@integration
def test_load_of_the_spec_path_gives_the_same_best_trial(
    api_sweep: tuple[sweeps.Sweep, Path],
) -> None:
    sweep, path = api_sweep
    loaded = sweeps.load(path)
    assert (loaded.best, loaded.folder, loaded.spec) == (sweep.best, sweep.folder, sweep.spec)


def test_load_of_something_that_is_no_sweep_names_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="nothing-here: neither a sweep YAML nor a sweep folder"):
        sweeps.load(tmp_path / "nothing-here")


def imported_after(statement: str) -> list[str]:
    """The heavy packages a fresh interpreter has imported after `statement`."""
    code = (
        f"import sys; {statement}; "
        "print([m for m in ('ray', 'torch', 'transformers', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return list(yaml.safe_load(out))


def test_import_sweeps_imports_neither_ray_nor_torch() -> None:
    assert imported_after("import sweeps") == []


def test_the_import_check_sees_ray_when_it_is_imported() -> None:
    # Positive control for the check above.
    assert "ray" in imported_after("import sweeps.running.runner")
