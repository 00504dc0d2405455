"""Where trials run and how many at once: preflight of data, model and resources, the trials'
scalings, concurrency, and the scheduler's horizon (the most reports a trial makes)."""

from __future__ import annotations

from dataclasses import dataclass

from sweeps.errors import SpecError
from sweeps.spec import SweepSpec, apply_params
from trainables.config import FinetuneConfig, ScalingConfig
from trainables.plan import plan_job
from trainables.preflight import JobSummary, check_inputs, check_resources, cluster_nodes

# Knobs that change how many evaluations a trial reports.
_LENGTH_KEYS = (
    "training.batch_size",
    "training.epochs",
    "training.max_steps",
    "training.eval_every",
    "training.grad_accum_steps",
    "scaling.num_workers",
)


@dataclass(frozen=True)
class Placement:
    """What preflight found: the data's shape and how many trials run at once."""

    summary: JobSummary
    max_concurrent: int

    @property
    def train_rows(self) -> int:
        return self.summary.split_sizes["train"]


def extreme_jobs(
    spec: SweepSpec, prefix: str | tuple[str, ...]
) -> list[tuple[str, FinetuneConfig]]:
    """(where it comes from, job) for the base job and every combination of the bounds of the
    space's parameters whose key starts with `prefix`."""
    variants = [("job", spec.job)]
    for key, param in spec.search.space.items():
        if key.startswith(prefix):
            variants += [
                (f"search.space.{key}", apply_params(job, {key: value}))
                for _, job in variants
                for value in param.bounds_samples()
            ]
    return variants


def trial_scalings(spec: SweepSpec) -> list[tuple[str, ScalingConfig]]:
    """(where it comes from, scaling) for the base job and every extreme the space can give it."""
    return [
        ("job.scaling" if where == "job" else where, job.scaling)
        for where, job in extreme_jobs(spec, "scaling.")
    ]


def max_evaluations(spec: SweepSpec, train_rows: int) -> int:
    """The most reports any trial of the space can make."""
    return max(plan_job(job, train_rows).evaluations for _, job in extreme_jobs(spec, _LENGTH_KEYS))


def concurrency(
    scaling: ScalingConfig, nodes: list[dict[str, float]], cap: int | None = None
) -> int:
    """Trials that fit at once: the limiting resource over one trial's request, at most `cap`."""
    per_worker = {"CPU": scaling.cpus_per_worker, "GPU": scaling.gpus_per_worker}
    need = {
        res: scaling.num_workers * amount
        for res, amount in (per_worker | scaling.resources).items()
    }
    have = {res: sum(n.get(res, 0.0) for n in nodes) for res in need}
    fits = min(int(have[res] // amount) for res, amount in need.items() if amount)
    return max(1, min(fits, cap or fits))


def preflight(spec: SweepSpec) -> Placement:
    """Checks data, model and resources before any trial starts.

    Needs a connected Ray runtime (for the cluster's resources).

    Raises:
        FinetuneError: naming the field, file, column or resource at fault.
    """
    summary = check_inputs(spec.job)
    nodes = cluster_nodes()
    scalings = trial_scalings(spec)
    for where, scaling in scalings:
        check_resources(scaling, nodes, field=where)
    for res, amount in spec.driver_resources.items():
        if not any(node.get(res, 0.0) + 1e-9 >= amount for node in nodes):
            raise SpecError(
                f"driver_resources.{res}: infeasible resources: no node of the cluster has "
                f"{amount:g} {res} (nodes define: {sorted({r for n in nodes for r in n})})"
            )
    cap = spec.search.max_concurrent_trials
    return Placement(summary, min(concurrency(s, nodes, cap) for _, s in scalings))
