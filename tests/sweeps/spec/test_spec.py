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


WANDB_TOP_KEYS = ("method", "job", "metric", "early_terminate", "run_cap")


def wandb(**over: object) -> dict:
    """A W&B sweep file; keywords replace its top-level keys or add or replace parameters."""
    params: dict = {"data.builtin": {"value": "demo"}, "learning_rate": {"min": 1e-5, "max": 1e-3}}
    top = {key: value for key, value in over.items() if key in WANDB_TOP_KEYS}
    params |= {key: value for key, value in over.items() if key not in WANDB_TOP_KEYS}
    return {"method": "random", "parameters": params, **top}


INVALID = [
    ("unknown top-level key", spec(serch={}), "serch: unknown field"),
    # Found by the spec fuzzing (tests/chaos/test_spec_fuzz.py, SPEC_FUZZ_SEED=2): an empty
    # path became the current folder, read as an image folder.
    ("empty data path", spec(job={"data": {"train": ""}}), "data.train"),
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
    # Found by tests/chaos/test_spec_fuzz.py (seeded mutations of the examples), one per row.
    ("not YAML", "name: s\njob: [unclosed\n", "spec.yaml: not valid YAML: line 3, column 1"),
    ("not text", b"\xff\xfename: s\n", "not a text (UTF-8) file: byte 0 is 0xff"),
    (
        "W&B file without parameters",
        {"program": "train.py", "method": "random", "metric": {"name": "eval_loss"}},
        "parameters: missing; with method, metric, program this is a W&B sweep file",
    ),
    (
        "W&B method not a string",
        wandb(method=["random"]),
        "method: ['random'] is not a W&B method",
    ),
    (
        "W&B job not a mapping",
        wandb(job=["model"]),
        "job: expected a mapping of job sections",
    ),
    (
        "W&B metric name not a string",
        wandb(metric={"name": [1, 2], "goal": "maximize"}),
        "metric.name: [1, 2] is not a metric name",
    ),
    (
        "W&B metric key W&B has but not here",
        wandb(metric={"name": "eval_loss", "target": 0.1}),
        "metric.target: not supported here",
    ),
    (
        "W&B early_terminate not a mapping",
        wandb(early_terminate=[1, 2]),
        "early_terminate: expected {type: hyperband, min_iter: ...}, got [1, 2]",
    ),
    (
        "W&B unknown early_terminate key",
        wandb(early_terminate={"type": "hyperband", "min_iter": 1, "etas": 3}),
        "early_terminate.etas: not supported here",
    ),
    (
        "W&B eta not a number",
        wandb(early_terminate={"type": "hyperband", "min_iter": 1, "eta": True}),
        "early_terminate.eta: True; give a number > 1",
    ),
    (
        "W&B min_iter not an integer",
        wandb(early_terminate={"type": "hyperband", "min_iter": "one"}),
        "early_terminate.min_iter: 'one'; give an integer >= 1",
    ),
    (
        "W&B values not a list",
        wandb(batch_size={"values": 7}),
        "parameters.batch_size.values: expected a non-empty list of values, got 7",
    ),
    (
        "W&B distribution not a string",
        wandb(learning_rate={"distribution": True, "min": 1e-5, "max": 1e-3}),
        "parameters.learning_rate.distribution: True is not a W&B distribution",
    ),
    (
        "W&B value and values together",
        wandb(epochs={"value": 2, "values": [2, 3]}),
        "parameters.epochs: value and values contradict each other",
    ),
    (
        "W&B bound not a number",
        wandb(learning_rate={"distribution": "log_uniform_values", "min": 1e-5, "max": "x"}),
        "parameters.learning_rate.max: 'x' is not a number",
    ),
    (
        "W&B categorical without values",
        wandb(learning_rate={"distribution": "categorical", "min": 1e-5, "max": 1e-3}),
        "parameters.learning_rate: distribution categorical needs values",
    ),
    (
        "W&B log-space bounds that overflow",
        wandb(learning_rate={"distribution": "log_uniform", "min": -5, "max": 1e300}),
        "parameters.learning_rate: e to the power of min -5 or max 1e+300 overflows",
    ),
    (
        "W&B min above max",
        wandb(learning_rate={"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-5}),
        "(in the W&B file: search.space.optimizer.lr is parameters.learning_rate)",
    ),
    (
        "W&B range the job refuses",
        wandb(learning_rate={"distribution": "log_uniform_values", "min": 1e-5, "max": 1e300}),
        "(in the W&B file: search.space.optimizer.lr is parameters.learning_rate)",
    ),
    (
        "W&B run_cap out of range",
        wandb(run_cap=0),
        "(in the W&B file: search.num_samples is run_cap)",
    ),
    (
        "W&B constant of the wrong type",
        wandb(model_name_or_path={"value": [1, 2]}),
        "(in the W&B file: job.model.name_or_path is parameters.model_name_or_path)",
    ),
    (
        "W&B model that does not load",
        wandb(model_name_or_path={"value": "/no/such/model"}),
        "(in the W&B file: model.name_or_path is parameters.model_name_or_path)",
    ),
]


@pytest.mark.parametrize(("case", "raw", "message"), INVALID, ids=[c[0] for c in INVALID])
@pytest.mark.usefixtures("ray_session")  # a 2-CPU, no-GPU cluster, as on this machine
def test_invalid_specs_name_the_key_fast_and_start_nothing(
    case: str,
    raw: dict | str | bytes,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spec.yaml"
    # A mapping is a spec; text or bytes are a file's content as is (a broken document).
    if isinstance(raw, dict):
        raw = yaml.safe_dump({**raw, "storage_path": str(tmp_path / "results")})
    path.write_bytes(raw.encode() if isinstance(raw, str) else raw)
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
        # Line 1 names the schema (tests/sweeps/spec/test_schema.py); the next runs the example.
        command = path.read_text().splitlines()[1]
        assert command.startswith("# ") and str(path) in command, f"{path}: line 2 runs it"
        assert load_spec(path).name
