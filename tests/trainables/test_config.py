from pathlib import Path

import pytest

from trainables.config import FinetuneConfig, load_config, parse_config
from trainables.errors import ConfigError

DEMO = {"data": {"builtin": "demo"}}


def test_defaults_are_valid_and_frozen() -> None:
    cfg = parse_config(DEMO)
    assert cfg.optimizer.lr == 5e-5 and cfg.training.eval_every == "epoch"
    with pytest.raises(ValueError):
        cfg.optimizer.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({**DEMO, "optimiser": {}}, ["optimiser: unknown field", "optimizer"]),
        ({"data": {"builtin": "demo", "txt_column": "t"}}, ["data.txt_column", "text_column"]),
        ({**DEMO, "optimizer": {"lr": -1}}, ["optimizer.lr", "greater than 0"]),
        ({**DEMO, "optimizer": {"name": "lion"}}, ["optimizer.name", "adamw"]),
        ({**DEMO, "schedule": {"name": "step"}}, ["schedule.name", "cosine"]),
        ({**DEMO, "training": {"eval_every": 0}}, ["eval_every"]),
        ({**DEMO, "training": {"batch_size": 0}}, ["training.batch_size"]),
        ({**DEMO, "model": {"freeze": "layers"}}, ["model", "freeze_layers"]),
        ({**DEMO, "model": {"hidden_dropout": 1.5}}, ["model.hidden_dropout"]),
        ({"data": {}}, ["data", "exactly one data source"]),
        ({"data": {"builtin": "demo", "train": "x.csv"}}, ["exactly one data source"]),
        ({"data": {"builtin": "demo", "validation": "v.csv"}}, ["data.validation"]),
        ({**DEMO, "scaling": {"num_workers": 0}}, ["scaling.num_workers"]),
        ({**DEMO, "name": "has space"}, ["name"]),
    ],
)
def test_invalid_fields_are_named(raw: dict, names: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    for name in names:
        assert name in str(err.value)


def test_load_config_reads_yaml_and_reports_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("data:\n  builtin: demo\noptimizer:\n  lr: 1.0e-4\n")
    assert load_config(path).optimizer.lr == 1e-4
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_every_shipped_finetune_example_validates() -> None:
    examples = sorted(Path("trainables/examples").rglob("*.yaml"))
    assert examples
    for path in examples:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and str(path) in first, f"{path}: first line runs it"
        assert isinstance(load_config(path), FinetuneConfig)


def test_a_relative_data_path_is_made_absolute_against_the_starting_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray's trial and worker processes run in other folders: a relative path must not reach them.
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({"data": {"train": "data/t.csv", "test": "../x/test.jsonl"}})
    assert cfg.data.train == f"{tmp_path}/data/t.csv"
    assert cfg.data.test == f"{tmp_path}/../x/test.jsonl"


@pytest.mark.parametrize("uri", ["s3://bucket/t.parquet", "gs://b/t.csv", "/abs/t.csv"])
def test_uris_and_absolute_data_paths_are_kept(uri: str) -> None:
    assert parse_config({"data": {"train": uri}}).data.train == uri
