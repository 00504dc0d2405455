"""The GPU-hour budget counts what trials hold; preflight sizes every trial the space allows."""

from __future__ import annotations

from sweeps.running.placement import concurrency, trial_scalings
from sweeps.running.stoppers import GpuHoursBudget
from sweeps.spec import parse_spec


def test_gpu_hours_budget_stops_the_sweep_once_spent() -> None:
    budget = GpuHoursBudget(1.0, {"num_workers": 2, "gpus_per_worker": 1.0})
    # 2 workers x 1 GPU for 15 minutes = 0.5 GPU-hours.
    assert budget("a", {"time_this_iter_s": 900.0, "config": {}}) is False
    assert not budget.stop_all()
    # A trial whose space gave it 4 workers holds 4 GPUs: 0.25 h x 4 = 1 GPU-hour more.
    budget("b", {"time_this_iter_s": 900.0, "config": {"scaling.num_workers": 4}})
    assert budget.used == 1.5 and budget.stop_all()


def test_scaling_in_the_space_sizes_preflight_and_concurrency() -> None:
    spec = parse_spec(
        {
            "name": "s",
            "job": {"data": {"builtin": "demo"}, "scaling": {"num_workers": 1}},
            "search": {"space": {"scaling.num_workers": {"choice": [1, 2, 4]}}},
        }
    )
    sizes = sorted({(where, s.num_workers) for where, s in trial_scalings(spec)})
    assert sizes == [
        ("job.scaling", 1),
        ("search.space.scaling.num_workers", 1),
        ("search.space.scaling.num_workers", 2),
        ("search.space.scaling.num_workers", 4),
    ]
    nodes = [{"CPU": 8.0, "GPU": 0.0}]
    assert (
        min(
            concurrency(s, nodes, spec.search.max_concurrent_trials)
            for _, s in trial_scalings(spec)
        )
        == 2
    )
