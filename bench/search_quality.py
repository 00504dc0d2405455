"""Search quality: which method finds a good model for the least compute, replayed on recorded
learning curves.

Every method runs through this project's own search methods and schedulers, the real Ray Tune
objects a sweep builds from its spec (`sweeps.running.tuner.search_algorithm`, wrapped in Tune's
`ConcurrencyLimiter` as `max_concurrent_trials` wraps it, and `make_scheduler`), against the table
`bench/search_quality_record.py` recorded. A simulated clock replaces Tune's event loop, as Syne
Tune's simulator backend does: the searcher and scheduler are driven directly (suggest /
on_trial_result / on_trial_complete; on_trial_add / on_trial_result / on_trial_complete /
choose_trial_to_run, honouring CONTINUE, PAUSE and STOP), and each report advances its trial by the
recorded seconds of that evaluation. A proposed point takes the **nearest recorded
configuration** (categorical values first, then distance in design steps: one learning-rate level,
one batch-size doubling); each trial draws one of the configuration's recorded seeds.

    PYTHONPATH=$PWD .venv/bin/python bench/search_quality.py [--reps 30] [--jobs 2] \
        [--methods NAME ...] [--plot docs/search_quality_cdf.png]

Every printed figure of a method comes from its own repetitions and its own seeded bootstrap
generator, so a run of some `--methods` prints their rows exactly as a run of all does.

"HF hps default" is `Trainer.hyperparameter_search(backend="optuna")` as the pinned transformers
runs it by default (tests/bench/test_search_quality.py pins it): its default space (lr 1e-6..1e-4,
1-5 epochs, seed 1-40, batch 4-64), Optuna's TPE, 20 trials, one at a time at any worker count,
each scored once by the evaluation after its training (`eval_strategy="no"`: no intermediate
report, so nothing to prune, and no intermediate validation pass to pay for); maximizing val
accuracy, as a user would set it.

Printed per method and worker count: the median simulated wall time to reach the target (the
95th percentile of the table's final validation accuracies) with a 95% bootstrap interval, and
its distribution (reached fraction, 10th / 50th / 90th percentiles; a repetition that never
reached it counts as +inf), optionally as a CDF plot (`--plot`); the
test accuracy of the configuration it would promote (its best validation report so far) at
0.25x, 0.5x and 1x the compute of the full design (every configuration run once); how often that
test score is more than 1 point below the table's best (the best configuration's mean final
test accuracy); the same test accuracies when a confirmation stage (top 3 x 3 seeds) follows
the search, with that stage's compute; and last `time-to-target vs random: <x>x [95% CI a-b],
vs HF hps default: <y>x [95% CI c-d]` for the project's default method
(sweeps/examples/laptop.yaml: tpe + asha) at the first worker count.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import multiprocessing
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent
TABLE = ROOT / "data" / "search_quality_curves.parquet"
MAX_T = 6  # evaluations of a recorded run: the schedulers' horizon

#: Distance weights of the nearest-configuration lookup: one step of the design is 1.
_LR_STEP = 0.6  # decades between two recorded learning rates
_CATEGORICAL_MISMATCH = 100.0
#: A validation pass's seconds per test pass second: the table times the test pass apart
#: (`test_seconds`) but folds the validation pass into `seconds`; both run the same evaluation
#: loop, over 300 rows (20% of the 1,500-row subset) and 872 rows (the SST-2 dev file).
_VAL_PER_TEST_ROW = 300 / 872

PENDING, RUNNING, PAUSED, TERMINATED = "PENDING", "RUNNING", "PAUSED", "TERMINATED"


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Curve:
    """One recorded run: per evaluation, validation and test accuracy and seconds spent."""

    val: np.ndarray
    test: np.ndarray
    seconds: np.ndarray
    config_id: int = -1
    #: Per evaluation, the estimated seconds of its validation pass (part of `seconds`).
    val_seconds: np.ndarray | None = None


@dataclass(frozen=True)
class Table:
    """The recorded design: configurations (table columns), their runs by seed, and the
    figures every method is judged by."""

    configs: dict[int, dict[str, Any]]
    curves: dict[tuple[int, int], Curve]

    @classmethod
    def read(cls, path: Path = TABLE) -> Table:
        rows = pq.read_table(path).to_pylist()
        configs: dict[int, dict[str, Any]] = {}
        runs: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for row in rows:
            configs[row["config_id"]] = {
                k: row[k]
                for k in ("lr", "batch_size", "optimizer", "freeze", "weight_decay", "warmup_ratio")
            }
            runs.setdefault((row["config_id"], row["seed"]), []).append(row)
        curves = {}
        for key, run in runs.items():
            run.sort(key=lambda r: r["evaluation"])
            curves[key] = Curve(
                np.array([r["val_accuracy"] for r in run]),
                np.array([r["test_accuracy"] for r in run]),
                np.array([r["seconds"] for r in run]),
                key[0],
                np.array([r.get("test_seconds", 0.0) * _VAL_PER_TEST_ROW for r in run]),
            )
        return cls(configs, curves)

    def seeds(self, config_id: int) -> list[int]:
        return sorted(s for c, s in self.curves if c == config_id)

    @property
    def target(self) -> float:
        """The top 5% of the table's final validation accuracies (its 95th percentile)."""
        return float(np.quantile([c.val[-1] for c in self.curves.values()], 0.95))

    @property
    def full_cost(self) -> float:
        """Seconds to run every configuration once (its seeds' mean length)."""
        return float(
            sum(
                np.mean([self.curves[c, s].seconds.sum() for s in self.seeds(c)])
                for c in self.configs
            )
        )

    @property
    def best_test(self) -> float:
        """The best configuration's mean final test accuracy over its seeds."""
        return max(
            float(np.mean([self.curves[c, s].test[-1] for s in self.seeds(c)]))
            for c in self.configs
        )

    def nearest(self, point: dict[str, Any]) -> int:
        """The recorded configuration closest to `point` (table column names; absent keys are
        not compared): categorical mismatches dominate, then learning-rate levels (log scale)
        and batch-size doublings."""

        def distance(config: dict[str, Any]) -> float:
            d = 0.0
            for key, value in point.items():
                if key == "lr":
                    d += (math.log10(value / config["lr"]) / _LR_STEP) ** 2
                elif key == "batch_size":
                    d += math.log2(value / config["batch_size"]) ** 2
                elif key in ("weight_decay", "warmup_ratio"):
                    d += 0.25 * ((value - config[key]) / 0.1) ** 2
                elif config[key] != value:
                    d += _CATEGORICAL_MISMATCH
            return d

        return min(self.configs, key=lambda c: (distance(self.configs[c]), c))


# --------------------------------------------------------------------------- the simulator


class SimTrial:
    """What Tune's schedulers read of a trial: id, status, config, last result, is_saving."""

    def __init__(self, trial_id: str, config: dict[str, Any], curve: Curve, evaluations: int):
        self.trial_id = trial_id
        self.config = config
        self.status = PENDING
        self.is_saving = False
        self.last_result: dict[str, Any] = {}
        self.curve = curve
        self.evaluations = evaluations
        self.done = 0  # evaluations reported

    def __repr__(self) -> str:
        return f"SimTrial({self.trial_id}, {self.status}, {self.done}/{self.evaluations})"


@dataclass(order=True)
class Report:
    """One evaluation as the sweep saw it: when (simulated wall seconds), the compute spent by
    then (worker-seconds), and its scores."""

    wall: float
    compute: float
    val: float
    test: float
    config_id: int = -1


#: A proposal -> (the recorded curve it replays, evaluations it runs).
Resolver = Callable[[dict[str, Any], np.random.Generator], tuple[Curve, int]]


@dataclass
class Simulation:
    """Drives one searcher and one scheduler against recorded curves on a simulated clock.

    The controller side follows Tune's `TuneController`: every trial the searcher suggests is
    added at once, pending (its `ConcurrencyLimiter` refuses more while `workers` trials are
    live, paused ones included), and a free worker runs what `choose_trial_to_run` returns;
    STOP and the last report end a trial (`on_trial_complete` for both), PAUSE frees its worker,
    and the scheduler's `stop_trial` of a paused trial calls `on_trial_remove`.

    Args:
        searcher: A Tune `Searcher` (what `ConcurrencyLimiter` wraps).
        scheduler: A Tune `TrialScheduler`.
        resolve: Maps a suggested config to its recorded curve and length.
        workers: Trials at once.
        compute_budget: Worker-seconds after which the sweep ends.
        max_trials: Trials the searcher may suggest (a grid's size).
        metric: The reported key the searcher and scheduler watch.
    """

    searcher: Any
    scheduler: Any
    resolve: Resolver
    workers: int
    compute_budget: float
    rng: np.random.Generator
    max_trials: int = 100_000
    metric: str = "val_accuracy"
    trials: list[SimTrial] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    stalled: bool = False
    peak_running: int = 0  # most trials running at once
    _events: list[tuple[float, int, SimTrial]] = field(default_factory=list)
    _now: float = 0.0
    _compute: float = 0.0
    _seq: int = 0

    # The TuneController methods schedulers call.
    def get_trials(self) -> list[SimTrial]:
        return list(self.trials)

    def get_live_trials(self) -> list[SimTrial]:
        return [t for t in self.trials if t.status != TERMINATED]

    def stop_trial(self, trial: SimTrial) -> None:
        if trial.status in (PENDING, PAUSED):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
        elif trial.status == RUNNING:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
            self._events = [e for e in self._events if e[2] is not trial]
            heapq.heapify(self._events)
        trial.status = TERMINATED

    def _running(self) -> int:
        return sum(t.status == RUNNING for t in self.trials)

    def _start(self, trial: SimTrial) -> None:
        trial.status = RUNNING
        self.peak_running = max(self.peak_running, self._running())
        self._seq += 1
        heapq.heappush(
            self._events, (self._now + trial.curve.seconds[trial.done], self._seq, trial)
        )

    def _fill(self) -> None:
        # As Tune's controller: first every trial the searcher gives now (they wait PENDING for
        # resources; its `ConcurrencyLimiter` says when to stop), then what the scheduler
        # chooses to run while workers are free.
        while len(self.trials) < self.max_trials:
            trial_id = f"{len(self.trials):05d}"
            config = self.searcher.suggest(trial_id)
            if config is None or config == "FINISHED":
                break
            curve, evaluations = self.resolve(config, self.rng)
            trial = SimTrial(trial_id, config, curve, evaluations)
            self.trials.append(trial)
            self.scheduler.on_trial_add(self, trial)
        while self._running() < self.workers:
            chosen = self.scheduler.choose_trial_to_run(self)
            if chosen is None:
                return
            self._start(chosen)

    def run(self) -> Simulation:
        """Runs until the compute budget is spent, or nothing can run (`stalled`)."""
        self._fill()
        while self._events:
            when, _, trial = heapq.heappop(self._events)
            self._compute += (when - self._now) * (self._running())
            self._now = when
            if self._compute > self.compute_budget:
                return self
            curve, k = trial.curve, trial.done
            trial.done += 1
            result = {
                "training_iteration": trial.done,
                self.metric: float(curve.val[k]),
                "time_total_s": float(curve.seconds[: k + 1].sum()),
                "trial_id": trial.trial_id,
            }
            self.reports.append(
                Report(
                    when, self._compute, float(curve.val[k]), float(curve.test[k]), curve.config_id
                )
            )
            decision = self.scheduler.on_trial_result(self, trial, result)
            trial.last_result = result
            if decision != "STOP":
                self.searcher.on_trial_result(trial.trial_id, result)
            if decision == "STOP" or trial.done >= trial.evaluations:
                self.stop_trial(trial)
            elif decision == "PAUSE":
                trial.status = PAUSED
            else:
                self._seq += 1
                heapq.heappush(self._events, (when + curve.seconds[trial.done], self._seq, trial))
            self._fill()
        # Nothing runs and nothing can start: trials left paused mean the sweep hangs here.
        self.stalled = any(t.status == PAUSED for t in self.trials)
        return self

    def time_to(self, target: float) -> float:
        """Simulated wall seconds until the first report at or above `target` (inf: never)."""
        return min((r.wall for r in self.reports if r.val >= target), default=math.inf)

    def promoted_test(self, compute: float) -> float:
        """The test accuracy of the best validation report with at most `compute` spent (the
        checkpoint the sweep would promote had it stopped there); NaN before any report."""
        seen = [r for r in self.reports if r.compute <= compute]
        if not seen:
            return math.nan
        best = max(seen, key=lambda r: (r.val, -r.wall))
        return float(best.test)


def confirmed(sim: Simulation, table: Table, compute: float, top_k: int = 3) -> tuple[float, float]:
    """The confirmation stage (`search.confirm: {top_k, seeds}`) after the search had spent
    `compute`: the `top_k` configurations by best validation report so far, each run in full on
    every recorded seed (no early stopping); the winner has the best mean of its runs' best
    validation; promotion takes its best run's best checkpoint. The stage's seeds are the
    table's (3), one of which the search itself may have drawn: a replay cannot make new ones.

    Returns: (the promoted test accuracy, the stage's compute in worker-seconds); NaN before
    any report.
    """
    best: dict[int, float] = {}
    for r in sim.reports:
        if r.compute <= compute:
            best[r.config_id] = max(best.get(r.config_id, -math.inf), r.val)
    if not best:
        return math.nan, 0.0
    top = sorted(best, key=lambda c: (-best[c], c))[:top_k]
    runs = {c: [table.curves[c, s] for s in table.seeds(c)] for c in top}
    winner = max(top, key=lambda c: (np.mean([run.val.max() for run in runs[c]]), -c))
    promoted = max(runs[winner], key=lambda run: run.val.max())
    cost = sum(float(run.seconds.sum()) for rs in runs.values() for run in rs)
    return float(promoted.test[int(np.argmax(promoted.val))]), cost


# --------------------------------------------------------------------------- the methods


BASE_JOB: dict[str, Any] = {
    "data": {"builtin": "demo"},
    "training": {"epochs": 2, "monitor": "val_accuracy"},
}
#: The table column of each dotted job key the replayed spaces search.
COLUMNS = {
    "optimizer.lr": "lr",
    "training.batch_size": "batch_size",
    "optimizer.name": "optimizer",
    "model.freeze": "freeze",
}


def project_space(lrs: Sequence[float] | None = None) -> dict[str, Any]:
    """The space the project's methods search: the design's ranges (a grid over its levels).

    Weight decay and warmup are not searched: in the recorded fraction they follow from the
    other factors, so a searched value could never select a different recorded run.
    """
    lr: dict[str, Any] = {"grid": list(lrs)} if lrs else {"loguniform": [1e-6, 1e-3]}
    return {
        "optimizer.lr": lr,
        "training.batch_size": {"choice": [16, 32]},
        "optimizer.name": {"choice": ["adamw", "sgd"]},
        "model.freeze": {"choice": ["none", "backbone"]},
    }


@dataclass(frozen=True)
class Method:
    """A replayed method: the spec's search method and scheduler section, and how a sweep of it
    runs its trials.

    Attributes:
        trials: Trials it starts at most (None: until the compute budget is spent).
        concurrency: Trials at once (None: as many as the row's workers).
        reports: "every" evaluation reaches the searcher and scheduler, or only the one at the
            trial's "end" (its intermediate evaluations are not run at all).
    """

    name: str
    search: str
    scheduler: dict[str, Any]
    trials: int | None = None
    concurrency: int | None = None
    reports: str = "every"


#: `Trainer.hyperparameter_search`'s defaults in the pinned transformers (tests/bench pins them):
#: `n_trials=20`; its Optuna backend calls `study.optimize(n_jobs=kwargs.pop("n_jobs", 1))`, one
#: trial at a time whatever the machine has; `TrainingArguments.eval_strategy="no"`, so a trial
#: is scored by the `trainer.evaluate()` after its training and reports nothing before (Optuna's
#: default MedianPruner never sees an intermediate value and cannot prune).
HF_N_TRIALS = 20
HF_CONCURRENCY = 1
HF_REPORTS = "end"


METHODS = (
    Method("random", "random", {"name": "fifo"}),
    Method("grid", "grid", {"name": "fifo"}),
    Method("tpe", "tpe", {"name": "fifo"}),
    Method("gp", "gp", {"name": "fifo"}),
    Method("random+asha", "random", {"name": "asha", "grace_period": 1, "reduction_factor": 3}),
    Method("tpe+asha", "tpe", {"name": "asha", "grace_period": 1, "reduction_factor": 3}),
    Method("hyperband", "random", {"name": "hyperband", "reduction_factor": 3}),
    Method("median", "random", {"name": "median", "grace_period": 1}),
    Method(
        "HF hps default",
        "hf",
        {"name": "fifo"},
        trials=HF_N_TRIALS,
        concurrency=HF_CONCURRENCY,
        reports=HF_REPORTS,
    ),
)
DEFAULT_METHOD = "tpe+asha"  # sweeps/examples/laptop.yaml: method tpe, scheduler asha


def build(method: Method, table: Table, seed: int, workers: int) -> tuple[Any, Any, Resolver, int]:
    """The searcher (in Tune's `ConcurrencyLimiter`), scheduler, resolver and trial cap of one
    repetition."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    from transformers.trainer_utils import default_hp_space_optuna

    from sweeps.running.schedulers import SchedulerContext, make_scheduler
    from sweeps.running.tuner import search_algorithm
    from sweeps.spec import flatten, parse_spec

    lrs = sorted({c["lr"] for c in table.configs.values()}) if method.search == "grid" else None
    spec = parse_spec(
        {
            "name": "search-quality",
            "job": BASE_JOB,
            "search": {
                "method": "tpe" if method.search == "hf" else method.search,
                "metric": "val_accuracy",
                "mode": "max",
                "seed": seed,
                "space": project_space(lrs),
            },
            "scheduler": method.scheduler,
        }
    )
    fixed = flatten(spec.job.model_dump(mode="json"))
    context = SchedulerContext(spec.objective, MAX_T, spec.search.space, fixed, seed)
    scheduler = make_scheduler(spec.scheduler, context)
    if method.search == "hf":
        # transformers' `hyperparameter_search(backend="optuna")` default: its default space,
        # Optuna's default TPESampler (seeded here for a reproducible replay); the default
        # MedianPruner is left out because no intermediate value ever reaches it. Direction:
        # maximize val accuracy, what a user sets (the default "minimize" of the default
        # objective, eval loss or the sum of the metrics, would not search for accuracy).
        searcher = OptunaSearch(
            space=default_hp_space_optuna,
            metric="val_accuracy",
            mode="max",
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        resolve = _hf_resolver(table, end_only_reports=method.reports == "end")
    else:
        searcher = search_algorithm(spec, fixed)
        resolve = _project_resolver(table)
    cap = spec.trials if method.search == "grid" else method.trials
    concurrency = method.concurrency or workers
    limited = ConcurrencyLimiter(searcher, max_concurrent=concurrency)
    return limited, scheduler, resolve, cap or 100_000


def _pick(table: Table, point: dict[str, Any], rng: np.random.Generator) -> Curve:
    config_id = table.nearest(point)
    seeds = table.seeds(config_id)
    return table.curves[config_id, seeds[int(rng.integers(len(seeds)))]]


def _project_resolver(table: Table) -> Resolver:
    def resolve(config: dict[str, Any], rng: np.random.Generator) -> tuple[Curve, int]:
        point = {COLUMNS[k]: v for k, v in config.items() if k in COLUMNS}
        curve = _pick(table, point, rng)
        return curve, len(curve.val)

    return resolve


def end_only(curve: Curve, evaluations: int) -> Curve:
    """A run of the first `evaluations` evaluations of `curve` that evaluates only at its end
    (`eval_strategy="no"`, then `trainer.evaluate()`): one report, the last one's scores, after
    all their training and one validation pass (the skipped passes' estimated seconds taken off;
    a table without them keeps the full seconds)."""
    skipped = (
        0.0 if curve.val_seconds is None else float(curve.val_seconds[: evaluations - 1].sum())
    )
    return Curve(
        curve.val[evaluations - 1 : evaluations],
        curve.test[evaluations - 1 : evaluations],
        np.array([float(curve.seconds[:evaluations].sum()) - skipped]),
        curve.config_id,
    )


def _hf_resolver(table: Table, end_only_reports: bool = True) -> Resolver:
    """HF's point -> a recorded run: HF's fixed defaults (AdamW, no weight decay, no warmup, no
    freezing) for the rest; its seed (1..40) picks the recorded seed (seed mod the 3 seeds
    recorded: HF's default space searches the seed, so it can learn a lucky one); its epochs
    (1..5) run the first ceil(6 * epochs / 5) evaluations of the recorded 6-evaluation run (an
    approximation: the recorded run's linear decay is stretched over its whole length). With
    `end_only_reports` the run reports once, at its end (`end_only`)."""

    def resolve(config: dict[str, Any], rng: np.random.Generator) -> tuple[Curve, int]:
        point = {
            "lr": config["learning_rate"],
            "batch_size": config["per_device_train_batch_size"],
            "optimizer": "adamw",
            "freeze": "none",
            "weight_decay": 0.0,
            "warmup_ratio": 0.0,
        }
        config_id = table.nearest(point)
        seeds = table.seeds(config_id)
        curve = table.curves[config_id, seeds[config["seed"] % len(seeds)]]
        evaluations = min(len(curve.val), math.ceil(MAX_T * config["num_train_epochs"] / 5))
        if end_only_reports:
            return end_only(curve, evaluations), 1
        return curve, evaluations

    return resolve


# --------------------------------------------------------------------------- the bench


@dataclass(frozen=True)
class Outcome:
    """What one repetition of one method gave."""

    method: str
    workers: int
    rep: int
    time_to_target: float
    tests: tuple[float, ...]  # promoted test accuracy at each BUDGETS fraction
    confirmed: tuple[float, ...]  # the same after a confirmation stage (top 3 x 3 seeds)
    confirm_cost: float  # that stage's compute after the 1x search, worker-seconds
    trials: int
    stalled: bool
    peak_running: int = 0  # most trials running at once
    reports: int = 0  # evaluations the searcher and scheduler saw


BUDGETS = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class ReplayTask:
    """One repetition: a method at a worker count, seeded, on a table, for `horizon` times the
    full design's compute."""

    method: Method
    workers: int
    rep: int
    table: Path
    horizon: float = 1.0


def replay(task: ReplayTask) -> Outcome:
    """Runs one repetition on the simulated clock (a module-level function: pools pickle it)."""
    quiet()
    table = Table.read(task.table)
    np.random.seed(task.rep)  # ASHA draws its bracket from numpy's global generator
    searcher, scheduler, resolve, cap = build(task.method, table, task.rep, task.workers)
    cost = table.full_cost
    sim = Simulation(
        searcher,
        scheduler,
        resolve,
        task.method.concurrency or task.workers,
        compute_budget=task.horizon * cost,
        rng=np.random.default_rng(task.rep),
        max_trials=cap,
    ).run()
    return Outcome(
        task.method.name,
        task.workers,
        task.rep,
        sim.time_to(table.target),
        tuple(sim.promoted_test(f * cost) for f in BUDGETS),
        tuple(confirmed(sim, table, f * cost)[0] for f in BUDGETS),
        confirmed(sim, table, cost)[1],
        len(sim.trials),
        sim.stalled,
        sim.peak_running,
        len(sim.reports),
    )


def one_thread() -> None:
    """Keeps a replay process to one torch thread: `gp`'s surrogate runs on torch, whose default
    of a thread per core oversubscribes a machine that replays on every core (2 processes x 2
    threads on 2 cores ran the GP replays ~2x slower)."""
    import torch

    torch.set_num_threads(1)


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def bootstrap_median(
    values: np.ndarray, rng: np.random.Generator, n: int = 2000
) -> tuple[float, float, float]:
    """Median and its 95% percentile-bootstrap interval (inf where unreached runs dominate)."""
    draws = rng.choice(values, size=(n, len(values)), replace=True)
    medians = np.median(draws, axis=1)
    # Non-interpolating quantiles: medians may be inf (not reached), and inf - inf is NaN.
    low = np.quantile(medians, 0.025, method="lower")
    high = np.quantile(medians, 0.975, method="higher")
    return float(np.median(values)), float(low), float(high)


def ratio_interval(
    base: np.ndarray, ours: np.ndarray, rng: np.random.Generator, n: int = 2000
) -> tuple[float, float, float]:
    """median(base) / median(ours) and its 95% bootstrap interval (each side resampled)."""
    b = np.median(rng.choice(base, size=(n, len(base))), axis=1)
    o = np.median(rng.choice(ours, size=(n, len(ours))), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = b / o
        point = float(np.median(base) / np.median(ours))
    low = np.nanquantile(ratios, 0.025, method="lower")
    high = np.nanquantile(ratios, 0.975, method="higher")
    return point, float(low), float(high)


def _fmt_s(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0f}s"


def row_rng(*key: object) -> np.random.Generator:
    """A bootstrap generator of its own for each printed figure (seeded by its method names and
    worker count), so a run of some methods prints their rows exactly as a run of all does."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def percentile(values: np.ndarray, q: float) -> float:
    """The empirical q-quantile (no interpolation: a "not reached" repetition is +inf, and an
    interpolated quantile next to one would be inf or NaN by arithmetic, not by rank)."""
    return float(np.quantile(values, q, method="inverted_cdf"))


def plot_cdf(ttt: dict[tuple[str, int], np.ndarray], workers: Sequence[int], path: Path) -> None:
    """Writes the empirical CDF of time to target, one panel per worker count: the fraction of
    repetitions that reached the target by each simulated second (a curve that stays below 1
    has repetitions that never reached it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(workers), figsize=(6 * len(workers), 4.5), squeeze=False)
    for ax, w in zip(axes[0], workers, strict=True):
        finite_max = max(
            (
                float(t[np.isfinite(t)].max())
                for (_, ww), t in ttt.items()
                if ww == w and np.isfinite(t).any()
            ),
            default=1.0,
        )
        for (name, ww), times in ttt.items():
            if ww != w:
                continue
            reached = np.sort(times[np.isfinite(times)])
            xs = np.concatenate([[1.0], reached, [finite_max * 1.2]])
            ys = np.concatenate([[0.0], np.arange(1, len(reached) + 1), [len(reached)]]) / len(
                times
            )
            style = (
                {"linewidth": 2.5} if name in (DEFAULT_METHOD, "HF hps default", "random") else {}
            )
            ax.step(xs, ys, where="post", label=name, **style)
        ax.set_xscale("log")  # the methods' times span 20 s to several hundred
        ax.set_title(f"{w} worker(s)")
        ax.set_xlabel("simulated wall seconds to the target")
        ax.set_ylabel("fraction of repetitions that reached it")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Time to target on the recorded curves (bench/search_quality.py)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--jobs", type=int, default=2, help="processes replaying in parallel")
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument(
        "--horizon", type=float, default=2.0, help="simulated compute, times the full design's"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write the CDF plot here (PNG)")
    args = parser.parse_args(argv)
    quiet()
    table = Table.read(args.table)
    started = time.perf_counter()
    methods = [m for m in METHODS if not args.methods or m.name in args.methods]
    tasks = [
        ReplayTask(m, w, r, args.table, args.horizon)
        for w in args.workers
        for m in methods
        for r in range(args.reps)
    ]
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs, one_thread) as pool:
            outcomes = pool.map(replay, tasks, chunksize=1)
    else:
        outcomes = [replay(t) for t in tasks]
    runs = len(table.curves)
    print(
        f"table: {runs} runs of {len(table.configs)} configurations; target val_accuracy >= "
        f"{table.target:.4f} (95th percentile of final val); full design {table.full_cost:.0f} "
        f"worker-s; best configuration's mean test accuracy {table.best_test:.4f}; "
        f"{args.reps} repetitions; replay {time.perf_counter() - started:.0f} s"
    )
    header = (
        f"{'method':16s} {'workers':>7s} {'time to target [95% CI]':>28s} {'reached':>8s} "
        + " ".join(f"{'test@' + str(f) + 'x':>10s}" for f in BUDGETS)
        + f" {'>1pt below best @1x':>20s} {'trials':>7s} {'stalled':>7s}"
    )
    print(header)
    ttt: dict[tuple[str, int], np.ndarray] = {}
    for w in args.workers:
        for m in methods:
            mine = [o for o in outcomes if o.method == m.name and o.workers == w]
            times = np.array([o.time_to_target for o in mine])
            ttt[m.name, w] = times
            med, lo, hi = bootstrap_median(times, row_rng(m.name, w))
            tests = np.array([o.tests for o in mine])
            below = np.mean(tests[:, -1] < table.best_test - 0.01)
            print(
                f"{m.name:16s} {w:7d} {_fmt_s(med):>8s} [{_fmt_s(lo):>7s}, {_fmt_s(hi):>7s}]"
                f"    {np.isfinite(times).sum():3d}/{len(times):<3d} "
                + " ".join(f"{np.nanmean(tests[:, i]):10.4f}" for i in range(len(BUDGETS)))
                + f" {below:19.0%} {np.mean([o.trials for o in mine]):7.1f}"
                f" {sum(o.stalled for o in mine):7d}"
            )
    print(
        "time to target, its distribution over the repetitions (simulated s; a repetition that "
        "never reached the target counts as +inf, so a percentile above the reached fraction "
        "reads 'never'); how each method ran (trials started, most running at once, reports "
        "seen by its searcher and scheduler per trial):"
    )
    print(
        f"{'method':16s} {'workers':>7s} {'reached':>8s} {'p10':>7s} {'median':>7s} {'p90':>7s}"
        f" {'trials':>7s} {'at once':>8s} {'reports/trial':>14s}"
    )
    for w in args.workers:
        for m in methods:
            mine = [o for o in outcomes if o.method == m.name and o.workers == w]
            times = ttt[m.name, w]
            print(
                f"{m.name:16s} {w:7d} {np.isfinite(times).mean():8.0%}"
                f" {_fmt_s(percentile(times, 0.1)):>7s} {_fmt_s(float(np.median(times))):>7s}"
                f" {_fmt_s(percentile(times, 0.9)):>7s}"
                f" {np.mean([o.trials for o in mine]):7.1f} {max(o.peak_running for o in mine):8d}"
                f" {sum(o.reports for o in mine) / max(1, sum(o.trials for o in mine)):14.2f}"
            )
    if args.plot:
        plot_cdf(ttt, args.workers, args.plot)
        print(f"CDF plot: {args.plot}")
    print(
        "with a confirmation stage after the search (top 3 configurations x the 3 recorded "
        "seeds, full length; promoted: the best-mean configuration's best run):"
    )
    print(
        f"{'method':16s} {'workers':>7s} "
        + " ".join(f"{'test@' + str(f) + 'x+c':>12s}" for f in BUDGETS)
        + f" {'>1pt below best':>16s} {'stage cost':>11s}"
    )
    for w in args.workers:
        for m in methods:
            mine = [o for o in outcomes if o.method == m.name and o.workers == w]
            confirmed_tests = np.array([o.confirmed for o in mine])
            below = np.mean(confirmed_tests[:, -1] < table.best_test - 0.01)
            stage = np.mean([o.confirm_cost for o in mine]) / table.full_cost
            print(
                f"{m.name:16s} {w:7d} "
                + " ".join(
                    f"{np.nanmean(confirmed_tests[:, i]):12.4f}" for i in range(len(BUDGETS))
                )
                + f" {below:16.0%} {stage:10.2f}x"
            )
    names = {m.name for m in methods}
    if {DEFAULT_METHOD, "random", "HF hps default"} <= names:
        lines = []
        for w in args.workers:
            r = ratio_interval(
                ttt["random", w], ttt[DEFAULT_METHOD, w], row_rng("random", DEFAULT_METHOD, w)
            )
            h = ratio_interval(
                ttt["HF hps default", w],
                ttt[DEFAULT_METHOD, w],
                row_rng("HF hps default", DEFAULT_METHOD, w),
            )
            lines.append((w, r, h))
        for w, r, h in lines:
            print(
                f"{DEFAULT_METHOD}, {w} worker(s): vs random {r[0]:.2f}x [{r[1]:.2f}, {r[2]:.2f}], "
                f"vs HF hps default {h[0]:.2f}x [{h[1]:.2f}, {h[2]:.2f}]"
            )
        _, r, h = lines[0]
        print(
            f"time-to-target vs random: {r[0]:.2f}x [95% CI {r[1]:.2f}-{r[2]:.2f}], "
            f"vs HF hps default: {h[0]:.2f}x [95% CI {h[1]:.2f}-{h[2]:.2f}]"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
