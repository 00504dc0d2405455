"""The `sweeps` command's help and `sweeps status`: every subcommand says what it does with an
example, and the status table and JSON show what the results file holds."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sweeps import cli

ROOT = Path(__file__).resolve().parents[2]
# Written out here, not read from the CLI: a subcommand added without help fails below.
SUBCOMMANDS = ["run", "validate", "status", "best", "report", "promote", "verify", "schema"]


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_the_parser_has_exactly_the_documented_subcommands() -> None:
    parser = cli._parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    assert sorted(action.choices) == sorted(SUBCOMMANDS)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_sweeps_help_gives_every_subcommand_a_one_line_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = help_of(["--help"], capsys).splitlines()
    line = next(line for line in lines if line.split()[:1] == [command])
    assert len(line.split()) >= 4, line  # the name and a help text on the same line


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help_ends_with_a_runnable_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = help_of([command, "--help"], capsys)
    assert "example:\n  sweeps " + command in out
    example = out.split("example:\n", 1)[1].strip()
    argv = shlex.split(example.split(">")[0])[1:]
    args = cli._parser().parse_args(argv)
    assert args.command == command
    for spec in [getattr(args, "spec", None), *getattr(args, "specs", [])]:
        if spec:
            assert (ROOT / spec).is_file(), f"the example names a missing spec: {spec}"


def write_sweep(tmp_path: Path) -> Path:
    """A spec and a results file written by hand: two trials with known reports."""
    spec = {
        "name": "hand",
        "storage_path": str(tmp_path / "sweeps"),
        "job": {"data": {"builtin": "demo"}},
        "search": {"method": "random", "metric": "val_accuracy", "mode": "max", "num_samples": 3},
    }
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(spec))
    rows = {
        "trial_id": ["aaa", "aaa", "aaa", "bbb"],
        "training_iteration": [1, 2, 3, 1],
        "val_accuracy": [0.5, 0.75, 0.625, 0.25],
        "trial_status": ["RUNNING", "RUNNING", "TERMINATED", "TERMINATED"],
        "stopped_early": [False, False, False, True],
        "param.optimizer.lr": [1e-4, 1e-4, 1e-4, 3e-3],
        "param.model.freeze": ["none", "none", "none", "embeddings"],
    }
    folder = tmp_path / "sweeps" / "hand"
    folder.mkdir(parents=True)
    pq.write_table(pa.table(rows), folder / "results.parquet")
    return path


def test_status_prints_one_aligned_row_per_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", str(write_sweep(tmp_path))]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split("  ")[0:1] == ["trial"] and "best val_accuracy" in header
    assert first.split() == [
        "aaa",
        "TERMINATED",
        "0.75",
        "3",
        "no",
        "model.freeze=none,",
        "optimizer.lr=0.0001",
    ]
    assert second.split() == [
        "bbb",
        "TERMINATED",
        "0.25",
        "1",
        "yes",
        "model.freeze=embeddings,",
        "optimizer.lr=0.003",
    ]
    # Aligned: every column starts at the same offset on every line.
    for column in ("status", "best val_accuracy", "reports", "stopped early", "parameters"):
        at = header.index(column)
        assert first[at - 2 : at] == "  " and first[at] != " "


def test_status_json_is_one_document_with_every_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", str(write_sweep(tmp_path)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["sweep"], doc["metric"], doc["mode"], doc["planned_trials"]) == (
        "hand",
        "val_accuracy",
        "max",
        3,
    )
    assert doc["trials"] == [
        {
            "trial_id": "aaa",
            "status": "TERMINATED",
            "stopped_early": False,
            "params": {"optimizer.lr": 1e-4, "model.freeze": "none"},
            "reports": 3,
            "best": 0.75,
        },
        {
            "trial_id": "bbb",
            "status": "TERMINATED",
            "stopped_early": True,
            "params": {"optimizer.lr": 3e-3, "model.freeze": "embeddings"},
            "reports": 1,
            "best": 0.25,
        },
    ]


def test_status_of_a_sweep_with_no_results_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_sweep(tmp_path)
    (tmp_path / "sweeps" / "hand" / "results.parquet").unlink()
    assert cli.main(["status", str(path)]) == 0
    assert capsys.readouterr().out.startswith("no results for sweep 'hand' yet")
