"""The JSON Schema of a sweep file: generated from the typed spec, committed, named by every
example, and as strict as the spec where an editor can check it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sweeps import cli
from sweeps.errors import SpecError
from sweeps.spec import parse_spec
from sweeps.spec.schema import SCHEMA_FILE, schema_text, spec_schema
from sweeps.spec.wandb_format import DISTRIBUTIONS, _distribution

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "sweeps" / "examples").rglob("*.yaml"))
HEADER = "# yaml-language-server: $schema="


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(raw: dict[str, Any]) -> list[str]:
    return [e.message for e in validator().iter_errors(raw)]


def laptop() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "sweeps/examples/laptop.yaml").read_text())


def test_the_committed_schema_is_the_generated_one() -> None:
    # Regenerate with: sweeps schema > sweeps/spec/sweep.schema.json
    assert SCHEMA_FILE.read_text() == schema_text()


def test_sweeps_schema_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(SCHEMA_FILE.read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_names_the_committed_schema_on_its_first_line(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith(HEADER)
    named = (path.parent / first.removeprefix(HEADER).strip()).resolve()
    assert named == SCHEMA_FILE.resolve()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_satisfies_the_schema(path: Path) -> None:
    assert errors(yaml.safe_load(path.read_text())) == []


def misspelt(where: str) -> dict[str, Any]:
    raw = laptop()
    if where == "top":
        raw["serach"] = raw.pop("search")
    elif where == "job":
        raw["job"]["training"]["batchsize"] = raw["job"]["training"].pop("batch_size")
    elif where == "space":
        raw["search"]["space"]["optimizer.lrr"] = raw["search"]["space"].pop("optimizer.lr")
    elif where == "distribution":
        raw["search"]["space"]["optimizer.lr"] = {"log_uniform": [1e-5, 1e-3]}
    elif where == "range bound":
        raw["search"]["space"]["optimizer.lr"] = {"loguniform": ["low", 1e-3]}
    elif where == "metric":
        raw["search"]["metric"] = "val_acc"
    elif where == "sweep-set field":
        raw["job"]["name"] = "mine"
    return raw


MISTAKES = ["top", "job", "space", "distribution", "range bound", "metric", "sweep-set field"]


@pytest.mark.parametrize("where", MISTAKES)
def test_a_misspelt_key_is_rejected_by_the_schema(where: str) -> None:
    assert errors(misspelt(where))


@pytest.mark.parametrize("where", MISTAKES)
def test_the_spec_itself_rejects_what_the_schema_rejects(where: str) -> None:
    # The schema is no stricter than the spec: each case above is a real mistake.
    with pytest.raises(SpecError):
        parse_spec(misspelt(where))


def test_the_misspelt_cases_start_from_a_spec_the_schema_accepts() -> None:
    # Positive control for the rejections: the unchanged spec passes, so each error is the edit.
    assert errors(laptop()) == []
    assert parse_spec(laptop()).name == "laptop"


def test_two_distributions_for_one_parameter_are_rejected() -> None:
    raw = laptop()
    raw["search"]["space"]["optimizer.lr"] = {"uniform": [0.0, 1.0], "choice": [0.1]}
    assert errors(raw)


def test_a_wandb_sweep_file_with_a_misspelt_key_is_rejected() -> None:
    raw = yaml.safe_load((ROOT / "sweeps/examples/wandb_bayes.yaml").read_text())
    assert errors(raw) == []
    raw["early_terminat"] = raw.pop("early_terminate")
    assert errors(raw)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_every_wandb_distribution_the_schema_offers_is_translated(name: str) -> None:
    param = {"distribution": name, "min": 1, "max": 2, "mu": 0.0, "sigma": 1.0, "value": 3}
    if name == "categorical":
        param = {"distribution": name, "values": [1, 2]}
    assert _distribution("parameters.x", param)


def test_search_space_keys_offered_by_the_schema_are_the_jobs_fields() -> None:
    space = spec_schema()["definitions"]["SearchSpec"]["properties"]["space"]["properties"]
    # Spot checks against the job's documented fields, from outside the generator.
    assert {"optimizer.lr", "training.batch_size", "model.freeze", "data.max_length"} <= set(space)
    assert not {"name", "storage_path", "start_from"} & set(space)


def test_the_schema_file_has_no_local_paths() -> None:
    # A committed file that every user downloads must not leak this machine's paths.
    assert os.path.expanduser("~") not in SCHEMA_FILE.read_text()
    assert str(ROOT) not in SCHEMA_FILE.read_text()


def test_fields_carry_their_docstring_line_for_hover() -> None:
    scheduler = spec_schema()["definitions"]["SchedulerSpec"]["properties"]
    assert scheduler["grace_period"]["description"] == (
        "ASHA/median: evaluations before a trial may be stopped."
    )
