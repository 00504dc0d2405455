"""Every invalid spec fails fast, naming the key; every shipped example validates."""

import time
from pathlib import Path

import pytest
import yaml

from sweeps import cli
from sweeps.errors import SpecError
from sweeps.spec import apply_overrides, load_spec, parse_spec

JOB = {"data": {"builtin": "demo"}}


def spec(**over: object) -> dict:
    return {"name": "s", "job": JOB, **over}


INVALID = [
    ("unknown top-level key", spec(serch={}), "serch: unknown field"),
    ("unknown job key", spec(job={**JOB, "optimiser": {}}), "optimiser: unknown field"),
    (
        "unknown space key",
        spec(search={"space": {"optimizer.lrr": {"uniform": [0, 1]}}}),
        "search.space.optimizer.lrr: not a field of the job; did you mean optimizer.lr",
    ),
    (
        "bad bounds",
        spec(search={"space": {"optimizer.lr": {"uniform": [1, 0.1]}}}),
        "search.space.optimizer.lr",
    ),
    (
        "loguniform from zero",
        spec(search={"space": {"optimizer.lr": {"loguniform": [0, 1]}}}),
        "loguniform bounds must be > 0",
    ),
    (
        "two distributions",
        spec(search={"space": {"optimizer.lr": {"uniform": [0.1, 1], "choice": [1]}}}),
        "give exactly one of",
    ),
    (
        "value the job refuses",
        spec(search={"space": {"training.batch_size": {"choice": [0, 8]}}}),
        "training.batch_size",
    ),
    (
        "grid over a continuous range",
        spec(search={"method": "grid", "space": {"optimizer.lr": {"uniform": [0.1, 1]}}}),
        "search.method: grid needs finite values; ['optimizer.lr']",
    ),
    ("unknown method", spec(search={"method": "bohb"}), "search.method"),
    ("unknown scheduler", spec(scheduler={"name": "bohb"}), "scheduler.name"),
    (
        "metric never reported",
        spec(search={"metric": "val_acc"}),
        "search.metric: 'val_acc' is not reported",
    ),
    ("test metric for selection", spec(search={"metric": "test_accuracy"}), "search.metric"),
    (
        "condition on an unknown field",
        spec(
            search={
                "space": {
                    "optimizer.momentum": {"uniform": [0.1, 0.9], "when": {"optimizer.nam": "sgd"}}
                }
            }
        ),
        "search.space.optimizer.momentum.when",
    ),
    ("reserved job key", spec(job={**JOB, "name": "x"}), "job.name is set by the sweep"),
    (
        "GPU-hour budget without GPUs",
        spec(search={"gpu_hours_budget": 2}),
        "search.gpu_hours_budget: the job requests no GPUs",
    ),
    (
        "infeasible resources",
        spec(job={**JOB, "scaling": {"num_workers": 3, "cpus_per_worker": 1}}),
        "job.scaling: infeasible resources: 3 workers x 1 CPU each",
    ),
    (
        "custom worker resource no node has",
        spec(job={**JOB, "scaling": {"resources": {"gpu_node": 0.01}}}),
        "x 1 CPU, 0.01 gpu_node each; the cluster has 2 CPU and 0 gpu_node in 1 node(s)",
    ),
    (
        "trial-driver resource no node has",
        spec(driver_resources={"on_demand": 0.01}),
        "driver_resources.on_demand: infeasible resources: no node",
    ),
    (
        "infeasible GPUs",
        spec(job={**JOB, "scaling": {"gpus_per_worker": 1}}),
        "job.scaling: infeasible resources",
    ),
    (
        "infeasible in the space",
        spec(search={"space": {"scaling.num_workers": {"choice": [1, 4]}}}),
        "search.space.scaling.num_workers: infeasible resources: 4 workers",
    ),
]


@pytest.mark.parametrize(("case", "raw", "message"), INVALID, ids=[c[0] for c in INVALID])
@pytest.mark.usefixtures("ray_session")  # a 2-CPU, no-GPU cluster, as on this machine
def test_invalid_specs_name_the_key_fast_and_start_nothing(
    case: str, raw: dict, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**raw, "storage_path": str(tmp_path / "results")}))
    started = time.perf_counter()
    assert cli.main(["run", str(path)]) == 2
    assert time.perf_counter() - started < 5
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # no sweep folder, so no trial


def test_overrides_set_dotted_keys_and_space_distributions() -> None:
    raw = apply_overrides(
        spec(),
        [
            "search.num_samples=20",
            "job.optimizer.lr=1e-4",
            "search.space.optimizer.lr.loguniform=[1.0e-5, 1.0e-3]",
        ],
    )
    parsed = parse_spec(raw)
    assert parsed.search.num_samples == 20
    assert parsed.job.optimizer.lr == 1e-4
    assert parsed.search.space["optimizer.lr"].loguniform == (1e-5, 1e-3)
    with pytest.raises(SpecError, match="KEY=VALUE"):
        apply_overrides(spec(), ["num_samples"])


def test_every_shipped_example_validates_and_says_how_to_run_it() -> None:
    examples = sorted(Path("sweeps/examples").rglob("*.yaml"))
    assert examples
    for path in examples:
        # Line 1 names the schema (tests/sweeps/test_schema.py); the next runs the example.
        command = path.read_text().splitlines()[1]
        assert command.startswith("# ") and str(path) in command, f"{path}: line 2 runs it"
        assert load_spec(path).name
