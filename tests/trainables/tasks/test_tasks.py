"""Regression and multi-label as tasks: labels read and checked (bad input named by file, row
and field before anything runs), metrics as search targets in their own direction, a run that
resumes to the weights of one never stopped, and a promoted model that loads as its task."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import ray.train
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from sweeps import cli
from sweeps.errors import SpecError
from sweeps.results.queries import BestTrial
from sweeps.spec import parse_spec
from sweeps.store.model_versions import promote, verify
from sweeps.store.storage import Location
from tests.conftest import write_csv
from tests.task_data import multi_label_data, regression_data, regression_table
from trainables.config import FinetuneConfig, parse_config
from trainables.data import build_dataset
from trainables.errors import ConfigError, DataError
from trainables.evaluation import evaluate_folder
from trainables.in_process import run_in_process
from trainables.objective import Objective
from trainables.prepared import load_tokens, prepare_tokens
from trainables.tasks.saved import load_classifier

STEPS, EVERY = 20, 10


def job(model_dir: str, task: str, files: dict[str, str], **extra: Any) -> FinetuneConfig:
    data = regression_data(files) if task == "regression" else multi_label_data(files)
    return parse_config(
        {
            "task": task,
            "model": {"name_or_path": model_dir},
            "data": data,
            "optimizer": {"lr": 3e-3},
            "training": {
                "batch_size": 8,
                "max_steps": STEPS,
                "eval_every": EVERY,
                "seed": 5,
                "checkpoints_to_keep": None,
            },
            **extra,
        }
    )


# --------------------------------------------------------------------------- labels


def test_a_float_label_column_makes_a_regression_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A file of its own: the warning is said once per file and process.
    path = write_csv(regression_table(20, seed=5), tmp_path / "scores.csv")
    with caplog.at_level(logging.WARNING, logger="trainables.config"):
        cfg = parse_config({"data": regression_data({"train": path})})
    assert cfg.task == "regression"
    assert "task: regression, inferred" in caplog.text and "'score'" in caplog.text


def test_an_integer_label_column_stays_a_classification(tmp_path: Path) -> None:
    # The positive control's counterpart: whole numbers are classes, as before.
    table = regression_table(20, seed=5)
    table = table.set_column(2, "score", pa.array([int(v) for v in table["score"].to_pylist()]))
    path = write_csv(table, tmp_path / "classes.csv")
    assert parse_config({"data": regression_data({"train": path})}).task == "text"


def test_regression_labels_are_float_targets(regression_files: dict[str, str]) -> None:
    cfg = parse_config({"task": "regression", "data": regression_data(regression_files)})
    dataset = build_dataset(cfg.data, task="regression")
    assert dataset.label_names == ("score",)
    labels = dataset.splits["validation"].labels
    assert labels.dtype == np.float32 and labels.shape == (61, 1)
    table = regression_table(61, seed=2)  # the validation file's rows, as written
    np.testing.assert_allclose(labels[:, 0], table.column("score").to_numpy(), rtol=1e-6)


def test_several_regression_targets_are_columns(tmp_path: Path) -> None:
    table = regression_table(30, seed=4)
    table = table.append_column("other", pa.array([2.0 * v for v in table["score"].to_pylist()]))
    path = write_csv(table, tmp_path / "two.csv")
    data = {"train": path, "text_column": "sentence1", "label_columns": ["score", "other"]}
    cfg = parse_config({"data": data})
    assert cfg.task == "regression"
    labels = build_dataset(cfg.data, task="regression").splits["train"].labels
    assert labels.shape[1] == 2
    np.testing.assert_allclose(labels[:, 1], 2 * labels[:, 0], rtol=1e-6)


def test_a_non_numeric_regression_label_is_named_by_file_row_and_column(tmp_path: Path) -> None:
    table = regression_table(20, seed=4)
    scores = table["score"].to_pylist()
    labels = [str(s) for s in scores[:6]] + ["high"] + [str(s) for s in scores[7:]]
    path = write_csv(table.set_column(2, "score", pa.array(labels)), tmp_path / "bad.csv")
    cfg = parse_config(
        {
            "task": "regression",
            "data": {"train": path, "text_column": "sentence1", "label_column": "score"},
        }
    )
    with pytest.raises(DataError) as caught:
        build_dataset(cfg.data, task="regression")
    message = str(caught.value)
    assert "data.label_column" in message and path in message
    assert "data row 7" in message and "'high'" in message and "'score'" in message


def multi_label_csv(path: Path, labels: list[str]) -> str:
    texts = [f"text number {i}" for i in range(len(labels))]
    return write_csv(pa.table({"text": texts, "labels": labels}), path)


def test_multi_label_rows_are_multi_hot_from_separated_names_json_lists_and_ids(
    tmp_path: Path,
) -> None:
    train = multi_label_csv(tmp_path / "t.csv", ["joy,anger", '["fear"]', "2", "anger", "joy"])
    data = {"train": train, "validation": train, "label_names": ["joy", "anger", "fear"]}
    cfg = parse_config({"task": "multi_label", "data": {**data, "label_column": "labels"}})
    labels = build_dataset(cfg.data, task="multi_label").splits["train"].labels
    expected = [[1, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0]]
    np.testing.assert_array_equal(labels, np.array(expected, dtype=np.float32))


def test_multi_label_names_without_label_names_sort_numbers_as_numbers(tmp_path: Path) -> None:
    train = multi_label_csv(tmp_path / "t.csv", ["3,27", "27", "4;x", "3"])
    cfg = parse_config(
        {
            "task": "multi_label",
            "data": {"train": train, "validation": train, "label_column": "labels"},
        }
    )
    assert build_dataset(cfg.data, task="multi_label").label_names == ("3", "27", "4;x")


def test_a_multi_label_entry_naming_an_unknown_label_is_named_by_file_and_row(
    tmp_path: Path,
) -> None:
    train = multi_label_csv(tmp_path / "t.csv", ["joy,anger", "fear", "joy"])
    val = multi_label_csv(tmp_path / "v.csv", ["joy", "anger,glee"])
    cfg = parse_config(
        {
            "task": "multi_label",
            "data": {"train": train, "validation": val, "label_column": "labels"},
        }
    )
    with pytest.raises(DataError) as caught:
        build_dataset(cfg.data, task="multi_label")
    message = str(caught.value)
    assert val in message and "data row 2" in message and "'glee'" in message
    assert "data.label_column" in message


def test_an_empty_split_is_named_with_its_file(tmp_path: Path) -> None:
    train = multi_label_csv(tmp_path / "t.csv", ["joy,anger", "fear", "joy"])
    empty = write_csv(
        pa.table({"text": pa.array([], pa.string()), "labels": pa.array([], pa.string())}),
        tmp_path / "v.csv",
    )
    cfg = parse_config(
        {
            "task": "multi_label",
            "data": {"train": train, "validation": empty, "label_column": "labels"},
        }
    )
    with pytest.raises(DataError, match=r"data.validation: the validation split is empty .*v\.csv"):
        build_dataset(cfg.data, task="multi_label")


def test_sweeps_validate_names_a_bad_label_and_writes_nothing(
    tmp_path: Path, tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train = multi_label_csv(tmp_path / "t.csv", ["joy,anger", "fear", "joy", "anger"])
    val = multi_label_csv(tmp_path / "v.csv", ["joy", "anger,glee"])
    spec = {
        "name": "bad",
        "storage_path": str(tmp_path / "results"),
        "job": {
            "task": "multi_label",
            "model": {"name_or_path": tiny_model_dir},
            "data": {"train": train, "validation": val, "label_column": "labels"},
        },
        "search": {"method": "random", "metric": "val_f1_micro", "num_samples": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data row 2" in err and "'glee'" in err and str(val) in err
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- metrics as targets


def sweep(task: str, files: dict[str, str], **search: Any) -> dict[str, Any]:
    data = regression_data(files) if task == "regression" else multi_label_data(files)
    return {"name": "s", "job": {"task": task, "data": data}, "search": search}


def test_a_regression_sweep_monitors_its_target_in_its_direction(
    regression_files: dict[str, str],
) -> None:
    spec = parse_spec(sweep("regression", regression_files, metric="val_spearman"))
    assert spec.search.mode == "max" and spec.job.training.monitor == "val_spearman"
    spec = parse_spec(sweep("regression", regression_files, metric="val_rmse"))
    assert spec.search.mode == "min" and Objective.of("val_rmse").mode == "min"


def test_a_regression_sweep_naming_no_metric_selects_by_spearman(
    regression_files: dict[str, str],
) -> None:
    # GLUE STS-B's and sentence similarity's usual figure; a spec without any search section too.
    raw = sweep("regression", regression_files)
    del raw["search"]
    spec = parse_spec(raw)
    assert (spec.search.metric, spec.search.mode) == ("val_spearman", "max")
    assert spec.job.training.monitor == "val_spearman"


def test_a_multi_label_sweep_naming_no_metric_selects_by_macro_f1(
    multi_label_files: dict[str, str],
) -> None:
    # GoEmotions' reported figure (micro F1 rewards the frequent labels).
    spec = parse_spec(sweep("multi_label", multi_label_files, method="random"))
    assert (spec.search.metric, spec.search.mode) == ("val_f1_macro", "max")


def test_a_mode_against_the_metrics_direction_is_an_error_naming_both(
    regression_files: dict[str, str],
) -> None:
    with pytest.raises(SpecError, match=r"search.mode: mode 'max' contradicts 'val_mse'"):
        parse_spec(sweep("regression", regression_files, metric="val_mse", mode="max"))


def test_a_metric_the_task_does_not_report_is_an_error_naming_the_task_and_its_metrics(
    multi_label_files: dict[str, str],
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(sweep("multi_label", multi_label_files, metric="val_pearson"))
    message = str(caught.value)
    assert "'val_pearson' is not reported by task 'multi_label'" in message
    assert "val_f1_micro, val_f1_macro, val_subset_accuracy" in message


def test_a_monitor_the_task_does_not_report_is_an_error(regression_files: dict[str, str]) -> None:
    with pytest.raises(
        ConfigError, match=r"training.monitor: 'val_accuracy' is not reported by task 'regression'"
    ):
        parse_config(
            {"data": regression_data(regression_files), "training": {"monitor": "val_accuracy"}}
        )


# --------------------------------------------------------------------------- prepared tokens


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_prepared_tokens_keep_the_tasks_labels(
    task: str,
    tiny_model_dir: str,
    regression_files: dict[str, str],
    multi_label_files: dict[str, str],
    tmp_path: Path,
) -> None:
    files = regression_files if task == "regression" else multi_label_files
    cfg = job(tiny_model_dir, task, files)
    location = prepare_tokens(cfg, str(tmp_path))
    assert location is not None
    loaded = load_tokens(cfg, location)
    assert loaded is not None
    splits, names = loaded
    dataset = build_dataset(cfg.data, task=task)
    assert names == dataset.label_names
    np.testing.assert_array_equal(splits["validation"].labels, dataset.splits["validation"].labels)


# --------------------------------------------------------------------------- runs


class Reports:
    """Every report's metrics and checkpoint path; stops the run (as Tune stops a trial) at
    `stop_at`."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.stop_at = stop_at

    def __call__(self, metrics: dict[str, Any], checkpoint: ray.train.Checkpoint | None) -> None:
        self.metrics.append(metrics)
        assert checkpoint is not None
        self.paths.append(checkpoint.path)
        if metrics["step"] == self.stop_at:
            raise SystemExit(0)


def run(cfg: FinetuneConfig, storage: Path, name: str, reports: Reports) -> None:
    run_in_process(cfg, run_name=name, storage_path=str(storage), on_report=reports)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_a_stopped_run_resumes_to_the_weights_and_metrics_of_one_never_stopped(
    task: str,
    tiny_model_dir: str,
    regression_files: dict[str, str],
    multi_label_files: dict[str, str],
    tmp_path: Path,
) -> None:
    cfg = job(tiny_model_dir, task, regression_files if task == "regression" else multi_label_files)
    whole = Reports()
    run(cfg, tmp_path, "whole", whole)
    with pytest.raises(SystemExit):
        run(cfg, tmp_path, "stopped", Reports(stop_at=EVERY))
    resumed = Reports()
    run(cfg, tmp_path, "stopped", resumed)

    assert [m["step"] for m in resumed.metrics] == [2 * EVERY]
    a = load_file(str(Path(whole.paths[-1]) / "model.safetensors"))
    b = load_file(str(Path(resumed.paths[-1]) / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("val_loss", *(k for k in whole.metrics[-1] if k.startswith("test_"))):
        # Equal weights; a CPU forward's last bits vary with its threads' scheduling.
        expected = whole.metrics[-1][key]
        assert resumed.metrics[-1][key] == pytest.approx(expected, rel=1e-6, abs=close(key)), key


PROBLEM_TYPES = {"regression": "regression", "multi_label": "multi_label_classification"}


def close(metric: str) -> float:
    """How far a figure of the same weights may move between two evaluations: the last bits of
    a CPU forward vary between runs, and a correlation of the tiny model's barely spread
    predictions magnifies that (seen: 3.4e-5 on Pearson) where a count or a mean does not."""
    return 3e-3 if metric.endswith(("pearson", "spearman")) else 1e-6


@pytest.mark.timeout(300)
@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_a_promoted_model_loads_as_its_task_and_verifies(
    task: str,
    tiny_model_dir: str,
    regression_files: dict[str, str],
    multi_label_files: dict[str, str],
    tmp_path: Path,
) -> None:
    files = regression_files if task == "regression" else multi_label_files
    cfg = job(
        tiny_model_dir,
        task,
        files,
        training={"max_steps": EVERY, "eval_every": EVERY, "threshold": 0.4},
    )
    reports = Reports()
    run(cfg, tmp_path, "run", reports)
    metrics = reports.metrics[-1]
    best = BestTrial("t1", {}, metrics, Location.of(reports.paths[-1]))
    metric = "val_spearman" if task == "regression" else "val_f1_micro"
    done = promote(
        best,
        cfg,
        str(tmp_path / "models"),
        sweep="s",
        objective=Objective.of(metric),
        spec_sha256="0" * 64,
    )
    folder = done.location.path
    manifest = verify(str(tmp_path / "models" / "s"))
    assert manifest["model"]["task"] == task and manifest["selected_by"]["metric"] == metric

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.problem_type == PROBLEM_TYPES[task]
    names = build_dataset(cfg.data, task=task).label_names
    assert model.config.num_labels == len(names)
    # The promoted weights score in one process what the run reported, on validation and test.
    val = evaluate_folder(cfg, folder, "validation")
    assert val is not None
    for key, value in val.items():
        assert value == pytest.approx(metrics[key], rel=1e-5, abs=close(key)), key
    for key, value in manifest["test_metrics"].items():
        assert value == pytest.approx(metrics[key], rel=1e-5, abs=close(key)), key

    answer = load_classifier(folder)("a sentence to classify")
    if task == "regression":
        assert answer.startswith("score=")
    else:
        assert model.config.decision_threshold == 0.4
        assert set(answer.split(", ")) <= {*names, "(no label)"}
