"""Bad input fails on the driver, before any Ray worker starts, naming what is wrong."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import separable_table, write_csv
from trainables.config import ScalingConfig, parse_config
from trainables.errors import ConfigError, DataError, FinetuneError, ModelLoadError
from trainables.preflight import check_inputs, check_resources


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "train": write_csv(separable_table(40, 1), tmp_path / "train.csv"),
        "validation": write_csv(separable_table(10, 2), tmp_path / "val.csv"),
        "odd_val": write_csv(
            separable_table(10, 2).set_column(1, "sentiment", [["meh"] * 10]), tmp_path / "o.csv"
        ),
        "empty": write_csv(separable_table(1, 2).slice(0, 0), tmp_path / "empty.csv"),
        "missing": str(tmp_path / "nope.csv"),
    }


def raw(files: dict[str, str], model_dir: str, **over: dict) -> dict:
    data = {
        "train": files["train"],
        "validation": files["validation"],
        "text_column": "sentence",
        "label_column": "sentiment",
    }
    model = {"name_or_path": model_dir, **over.pop("model", {})}
    return {"model": model, "data": {**data, **over.pop("data", {})}, **over}


CASES = [
    ("unknown field", {"trainig": {}}, ConfigError, "trainig: unknown field"),
    ("value out of range", {"optimizer": {"lr": 0}}, ConfigError, "optimizer.lr"),
    (
        "missing file",
        {"data": {"validation": "{missing}"}},
        DataError,
        "data.validation: file not found",
    ),
    (
        "missing column",
        {"data": {"text_column": "review"}},
        DataError,
        "data.text_column: column 'review'",
    ),
    (
        "unseen validation label",
        {"data": {"validation": "{odd_val}"}},
        DataError,
        "label 'meh' in the validation split",
    ),
    ("empty split", {"data": {"validation": "{empty}"}}, DataError, "validation split is empty"),
    (
        "unloadable model",
        {"model": {"name_or_path": "{missing}"}},
        ModelLoadError,
        "model.name_or_path",
    ),
    (
        "too many frozen layers",
        {"model": {"freeze": "layers", "freeze_layers": 9}},
        ModelLoadError,
        "model.freeze_layers",
    ),
]


@pytest.mark.parametrize(("case", "over", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named_before_any_worker(
    files: dict[str, str], tiny_model_dir: str, case: str, over: dict, error: type, message: str
) -> None:
    over = {
        k: (
            {kk: vv.format(**files) if isinstance(vv, str) else vv for kk, vv in v.items()}
            if isinstance(v, dict)
            else v
        )
        for k, v in over.items()
    }
    started = time.perf_counter()
    with pytest.raises(error) as err:
        check_inputs(parse_config(raw(files, tiny_model_dir, **over)))
    assert message in str(err.value)
    assert isinstance(err.value, FinetuneError)
    assert time.perf_counter() - started < 5


def test_good_input_passes_and_reports_labels(files: dict[str, str], tiny_model_dir: str) -> None:
    summary = check_inputs(parse_config(raw(files, tiny_model_dir)))
    assert summary.label_names == ("neg", "pos")
    assert summary.split_sizes == {"train": 40, "validation": 10}


@pytest.mark.parametrize(
    ("scaling", "nodes", "short"),
    [
        (ScalingConfig(num_workers=3), [{"CPU": 2}], "CPU"),
        (ScalingConfig(num_workers=1, gpus_per_worker=1), [{"CPU": 8}], "GPU"),
        (ScalingConfig(num_workers=2, cpus_per_worker=3), [{"CPU": 4}, {"CPU": 2}], "CPU"),
    ],
)
def test_infeasible_resources_name_the_resource(
    scaling: ScalingConfig, nodes: list[dict[str, float]], short: str
) -> None:
    with pytest.raises(ConfigError, match=f"infeasible resources.*{short} short"):
        check_resources(scaling, nodes)


def test_feasible_resources_pack_across_nodes() -> None:
    check_resources(ScalingConfig(num_workers=2, cpus_per_worker=2), [{"CPU": 2}, {"CPU": 2}])
    check_resources(ScalingConfig(num_workers=2, gpus_per_worker=0.5), [{"CPU": 2, "GPU": 1}])


def test_cli_refuses_bad_input_without_starting_ray(files: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"data:\n  train: {files['train']}\n  text_column: review\n"
        f"  label_column: sentiment\nstorage_path: {tmp_path / 'results'}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "trainables.finetune", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "data.text_column: column 'review'" in done.stderr
    assert "Started a local Ray instance" not in done.stderr + done.stdout
    assert not (tmp_path / "results").exists()
