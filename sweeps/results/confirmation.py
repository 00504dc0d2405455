"""The confirmation stage's data: which configurations it retrains with which seeds (the plan),
and what it decided (each candidate's runs, their mean and standard deviation, the winner).

The stage itself runs as its own Tune experiment beside the sweep, `<name>.confirm/`, with the
plan saved there as `confirm_plan.json`; `sweeps.running.confirmation_stage` runs it.
Everything here only reads and decides, so `sweeps best`, promotion and the report agree on
the winner.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from sweeps.results.queries import BestTrial, SweepResults, best_report
from sweeps.results.summaries import TrialSummary
from sweeps.spec import SweepSpec
from sweeps.store import storage
from sweeps.store.storage import Location
from trainables.objective import Objective, is_finite_number
from trainables.reporting import REPORTED_METRICS

#: The job field a confirmation run changes.
SEED_KEY = "training.seed"
#: Confirmation seeds count up from here, away from the small seeds searches usually use, and
#: every candidate gets the same ones: paired seeds make the comparison of means fairer.
FIRST_SEED = 1000
PLAN_FILE = "confirm_plan.json"


def confirm_name(sweep: str) -> str:
    """The confirmation experiment's name (and folder) beside sweep `sweep`."""
    return f"{sweep}.confirm"


@dataclass(frozen=True)
class Candidate:
    """A configuration the search found, to retrain: the search trial and its best value."""

    search_trial: str
    params: dict[str, Any]
    search_value: float


@dataclass(frozen=True)
class ConfirmPlan:
    """The candidates, the seeds, and one point (a full trial config) per (candidate, seed)."""

    candidates: list[Candidate]
    seeds: list[int]
    #: The keys every point carries: Tune presets only keys its param space has.
    keys: list[str]
    #: Values for keys a candidate lacks (a conditional that did not apply): the job's own.
    fill: dict[str, Any]

    def point(self, candidate: Candidate, seed: int) -> dict[str, Any]:
        """The trial config that retrains `candidate` with `seed`."""
        values = {k: candidate.params.get(k, self.fill.get(k)) for k in self.keys}
        return {**values, SEED_KEY: seed}

    def points(self) -> list[dict[str, Any]]:
        """Every run of the stage, candidate by candidate."""
        return [self.point(c, s) for c in self.candidates for s in self.seeds]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConfirmPlan:
        raw = json.loads(text)
        return cls(
            candidates=[Candidate(**c) for c in raw["candidates"]],
            seeds=list(raw["seeds"]),
            keys=list(raw["keys"]),
            fill=dict(raw["fill"]),
        )


def plan_confirmation(
    trials: list[TrialSummary],
    objective: Objective,
    top_k: int,
    seeds: int,
    fixed: dict[str, Any],
) -> ConfirmPlan:
    """The `top_k` best distinct configurations of a finished search and `seeds` new seeds.

    Args:
        trials: The search's trials (`SweepResults.trials()`).
        objective: What "best" means; trials without a finite value are never candidates.
        top_k: How many configurations to retrain (fewer when the search found fewer).
        seeds: Seeds per configuration.
        fixed: The job's own values by dotted key, for keys a candidate lacks.
    """
    scored = [t for t in trials if t.best is not None]
    candidates: list[Candidate] = []
    seen: list[dict[str, Any]] = []
    for trial in objective.ranked(scored, lambda t: t.score):
        config = _without_seed(trial.params)
        # Grid sweeps repeated over seeds, or a sampler proposing a point twice: one candidate.
        if any(_same(config, other) for other in seen):
            continue
        seen.append(config)
        candidates.append(Candidate(trial.trial_id, config, trial.score))
        if len(candidates) == top_k:
            break
    # New seeds: none that a search trial trained with (searched, or the job's own).
    used = {t.params.get(SEED_KEY, fixed.get(SEED_KEY)) for t in trials}
    chosen = [s for s in range(FIRST_SEED, FIRST_SEED + seeds + len(used)) if s not in used]
    keys = sorted({k for c in candidates for k in c.params})
    return ConfirmPlan(candidates, chosen[:seeds], keys, {k: fixed.get(k) for k in keys})


@dataclass(frozen=True)
class SeedRun:
    """One confirmation run: its seed, trial and best target value (None: none reported)."""

    seed: int
    trial_id: str | None
    value: float | None


@dataclass(frozen=True)
class Confirmed:
    """A candidate after its confirmation runs."""

    candidate: Candidate
    runs: list[SeedRun]

    @property
    def values(self) -> list[float]:
        return [r.value for r in self.runs if r.value is not None]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the seeds (n - 1); None with fewer than 2."""
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def best_run(self, objective: Objective) -> SeedRun | None:
        """The seed whose run scored best (what promotion takes)."""
        scored = [r for r in self.runs if r.value is not None]
        ranked = objective.ranked(scored, lambda r: r.value if r.value is not None else 0.0)
        return ranked[0] if ranked else None


def decide(plan: ConfirmPlan, trials: list[TrialSummary], objective: Objective) -> list[Confirmed]:
    """Each candidate with its runs, best mean first (the winner), by `objective`.

    A run is matched to its (candidate, seed) by its parameters; a run that reported no finite
    value (or has not run yet) counts as missing, not as zero. Candidates with no value at all
    come last. Ties keep the search's order.
    """
    confirmed = []
    for candidate in plan.candidates:
        runs = []
        for seed in plan.seeds:
            point = plan.point(candidate, seed)
            match = next((t for t in trials if _same(t.params, _present(point))), None)
            runs.append(
                SeedRun(seed, match.trial_id if match else None, match.best if match else None)
            )
        confirmed.append(Confirmed(candidate, runs))
    with_mean = [c for c in confirmed if c.mean is not None]
    ranked = objective.ranked(with_mean, lambda c: c.mean if c.mean is not None else 0.0)
    return ranked + [c for c in confirmed if c.mean is None]


def read_plan(folder: Location) -> ConfirmPlan | None:
    """The plan saved in a confirmation folder; None before the stage started."""
    where = folder.join(PLAN_FILE)
    return ConfirmPlan.from_json(storage.read_text(where)) if storage.exists(where) else None


def confirmation_results(spec: SweepSpec) -> SweepResults:
    """The confirmation stage's own results (its folder beside the sweep's)."""
    return SweepResults(
        Location.of(spec.storage_path).join(confirm_name(spec.name)), spec.objective
    )


@dataclass(frozen=True)
class Confirmation:
    """A confirmation stage as its folder tells it: the plan, the decision, the reports."""

    plan: ConfirmPlan
    ranked: list[Confirmed]
    results: SweepResults
    rows: list[dict[str, Any]]

    @property
    def winner(self) -> Confirmed | None:
        """The candidate with the best mean; None before any run reported."""
        return self.ranked[0] if self.ranked and self.ranked[0].mean is not None else None

    def best_report(self, run: SeedRun, objective: Objective) -> dict[str, Any] | None:
        """`run`'s report best by `objective` whose checkpoint still exists."""
        at = self.results.folder.at
        own = [r for r in self.rows if r["trial_id"] == run.trial_id]
        return best_report(own, objective, lambda p: storage.exists(at(p)))

    def checkpoint(self, row: dict[str, Any]) -> Location:
        """The checkpoint of one of the stage's reports."""
        return self.results.folder.at(row["checkpoint_path"])


def confirmation_of(spec: SweepSpec) -> Confirmation | None:
    """The sweep's confirmation stage; None without one, or before it started."""
    if spec.search.confirm is None:
        return None
    results = confirmation_results(spec)
    plan = read_plan(results.folder)
    if plan is None:
        return None
    rows = results.rows()
    return Confirmation(plan, decide(plan, results.trials(), spec.objective), results, rows)


def confirmation_summary(spec: SweepSpec) -> dict[str, Any] | None:
    """The stage as the report shows it (`summary`); None without one."""
    stage = confirmation_of(spec)
    return summary(stage.plan, stage.ranked, spec.objective) if stage else None


def confirmed_best(spec: SweepSpec, objective: Objective | None = None) -> BestTrial | None:
    """The sweep's best trial: with a confirmation stage that ran, the winner's best seed (its
    report best by `objective`, default the sweep's), carrying the stage's figures for the
    manifest; otherwise the search's best report."""
    search = SweepResults.of(spec).best(objective)
    stage = confirmation_of(spec)
    winner = stage.winner if stage else None
    run = winner.best_run(spec.objective) if winner else None
    if stage is None or winner is None or run is None:
        return search
    row = stage.best_report(run, objective or spec.objective)
    if row is None:
        return search
    metrics = {k: float(row[k]) for k in REPORTED_METRICS if is_finite_number(row.get(k))}
    return BestTrial(
        row["trial_id"],
        stage.plan.point(winner.candidate, run.seed),
        metrics,
        stage.checkpoint(row),
        confirmation=summary(stage.plan, stage.ranked, spec.objective),
    )


def summary(plan: ConfirmPlan, ranked: list[Confirmed], objective: Objective) -> dict[str, Any]:
    """The stage as the manifest and report show it: the winner first, each candidate's runs."""
    return {
        "metric": objective.metric,
        "mode": objective.mode,
        "seeds": plan.seeds,
        "candidates": [
            {
                "search_trial": c.candidate.search_trial,
                "search_value": c.candidate.search_value,
                "params": c.candidate.params,
                "mean": c.mean,
                "std": c.std,
                "runs": [asdict(r) for r in c.runs],
            }
            for c in ranked
        ],
    }


def _without_seed(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != SEED_KEY}


def _present(point: dict[str, Any]) -> dict[str, Any]:
    # The results file keeps no parameter whose value is None.
    return {k: v for k, v in point.items() if v is not None}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal configurations; floats equal to rounding (a value read back from Parquet)."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        numbers = isinstance(x, float | int) and isinstance(y, float | int)
        if numbers and not isinstance(x, bool) and not isinstance(y, bool):
            if not math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0):
                return False
        elif x != y:
            return False
    return True
