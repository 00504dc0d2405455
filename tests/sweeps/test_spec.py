"""Every invalid spec fails fast, naming the key; every shipped example validates."""

import time
from pathlib import Path

import pytest

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
    ("unknown scheduler", spec(scheduler={"name": "pbt"}), "scheduler.name"),
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
]


@pytest.mark.parametrize(("case", "raw", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_specs_name_the_key_fast(case: str, raw: dict, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert message in str(err.value)
    assert time.perf_counter() - started < 5


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
    assert parsed.base_job.optimizer.lr == 1e-4
    assert parsed.search.space["optimizer.lr"].loguniform == (1e-5, 1e-3)
    with pytest.raises(SpecError, match="KEY=VALUE"):
        apply_overrides(spec(), ["num_samples"])


def test_every_shipped_example_validates_and_says_how_to_run_it() -> None:
    examples = sorted(Path("sweeps/examples").rglob("*.yaml"))
    assert examples
    for path in examples:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and str(path) in first, f"{path}: first line runs it"
        assert load_spec(path).name
