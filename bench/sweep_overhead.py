"""What does running a trial inside a sweep cost, beyond its training steps?

Runs the same short trials (a tiny random BERT, fixed steps, 2 DDP workers x 1 CPU each or with
`--workers 1` one worker x 2 CPUs, one trial at a time on this 2-core machine) through up to
three paths, and prints for each:

- the work every trial did, counted from its reports: optimizer steps, rows trained,
  evaluations, checkpoints (the same on every path, or the comparison is void);
- slot utilisation = training-step seconds / slot-seconds, where slot-seconds are the
  concurrent-trial slots times the wall time from the first trial's start to the last one's end;
- per-trial overhead = trial wall (Tune starts it -> Tune sees it finish) minus its training-step
  seconds (the loop's reported `step_seconds`), median and max;
- the whole sweep's wall time (the call that runs it, to its return), and the sweep path's
  one-off data preparation inside it.

Paths:
- `sweeps`: `sweeps.running.runner.run_sweep` on the equivalent spec. Before any trial starts it
  tokenizes the data once into Arrow files (timed and printed: work the baselines do inside
  every trial); a one-worker trial runs the loop in the Tune trial's own process
  (`trainables/in_process.py`) and a sweep of them reuses the trial processes.
- `tune-fn` (one worker only): what a user writes for a one-worker job, a plain Tune function
  trainable (`tune.Tuner(fn)`, no `TorchTrainer`) holding the worker's CPUs. The function runs
  the same loop on the same job (so the same model, steps, evaluations), tokenizes its data
  inside the trial, and hands every evaluation's report and checkpoint to
  `tune.report(metrics, checkpoint=...)`. Tune keeps the job's `checkpoints_to_keep` by its
  monitored metric, as the product's trial does. By default (`--baseline tuned`) Tune reuses
  trial actors (`reuse_actors=True`, a user setting, off by Tune's default);
- `tune-train`: the Ray 2.60 Tune-over-Train pattern: a Tune function trial that builds a
  `TorchTrainer` (the same loop) with `TuneReportCallback`, tokenizing inside every trial. By
  default it gets the settings a user could set as well, the ones this project sets: Train's
  health-check interval 0.2 s, no preemption watcher on a one-node cluster, and an entry
  function that imports the loop only on the workers.

`--baseline defaults` gives both baselines Ray's defaults. Each round runs every path once, in
a rotated order (the machine drifts); overheads are pooled over the rounds, ratios are the
median of each round's own ratio.

    .venv/bin/python bench/sweep_overhead.py [--trials 16] [--steps 400] [--workers 2]
        [--rounds 3] [--only sweeps] [--baseline tuned]

The one-worker case (issue 26): `--workers 1 --trials 5 --rounds 3`.
Longer trials (e.g. `--steps 5000`, about 2 minutes of steps each) show utilisation at scale.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.tune
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

import sweeps.running.runner as runner
from sweeps.running.runner import run_sweep
from sweeps.spec import apply_params, parse_spec
from trainables.config import FinetuneConfig, parse_config
from trainables.loop import run_loop
from trainables.objective import Objective
from trainables.reporter import KeptCheckpoint, local_device
from trainables.tiny import build_tiny_bert
from trainables.train_reporters import TrainReporter
from trainables.trainer import (
    HEALTH_CHECK_INTERVAL_S,
    loop_config,
    read_loop_config,
    train_fn_per_worker,
    worker_resources,
)

#: Path name -> what the output calls it.
LABELS = {
    "sweeps": "sweeps (run_sweep)",
    "tune-fn": "plain Tune function",
    "tune-train": "Tune + TorchTrainer",
}


class TrialClock(ray.tune.Callback):
    """Driver-side wall clock of every trial: Tune starting it to Tune seeing it end."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.start.setdefault(trial.trial_id, time.monotonic())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end[trial.trial_id] = time.monotonic()

    on_trial_error = on_trial_complete


def job(model_dir: str, steps: int, workers: int) -> dict[str, Any]:
    """The job every path runs: 4 evaluations, each reported with a checkpoint."""
    return {
        "model": {"name_or_path": model_dir},
        "data": {"builtin": "demo", "max_length": 32},
        "training": {
            "batch_size": 16,
            "max_steps": steps,
            "eval_every": max(1, steps // 4),
            "checkpoints_to_keep": 1,
        },
        # The machine's 2 cores, however many workers share them.
        "scaling": {"num_workers": workers, "cpus_per_worker": 2 // workers},
    }


SPACE_LR = (1e-5, 1e-3)


def trial_job(base: dict[str, Any], params: dict[str, Any], trial_id: str) -> FinetuneConfig:
    """A baseline trial's job: the sweep's job with the trial's values, as the product's
    trial builds it, but with no prepared data (a baseline tokenizes inside its trial)."""
    return apply_params(parse_config(base), params, name=trial_id)


# --- sweeps: the product's path --------------------------------------------------------------


def run_sweeps(base: dict[str, Any], trials: int, storage: str, clock: TrialClock) -> Run:
    spec = parse_spec(
        {
            "name": "sweeps",
            "storage_path": storage,
            "job": base,
            "search": {
                "method": "random",
                "num_samples": trials,
                "max_concurrent_trials": 1,
                "space": {"optimizer.lr": {"loguniform": list(SPACE_LR)}},
            },
        }
    )
    # The runner times nothing itself: wrap its one-off preparation to see what it costs.
    prepare = runner.prepare_tokens
    seconds: list[float] = []

    def timed(cfg: FinetuneConfig, folder: str) -> str | None:
        tick = time.monotonic()
        try:
            return prepare(cfg, folder)
        finally:
            seconds.append(time.monotonic() - tick)

    runner.prepare_tokens = timed
    try:
        tick = time.monotonic()
        run_sweep(spec, callbacks=[clock])
        wall = time.monotonic() - tick
    finally:
        runner.prepare_tokens = prepare
    return Run(str(Path(storage) / "sweeps"), wall, prepare_s=sum(seconds))


# --- tune-fn: a plain Tune function trainable, what a user writes for one worker -----------


class TuneFunctionReporter:
    """Where the loop's reports go in a plain Tune function: `tune.report`, each with its
    checkpoint folder (Tune copies it into the trial's storage before `report` returns)."""

    rank = 0
    world_size = 1
    distributed = False

    @property
    def device(self) -> Any:
        return local_device()

    def __init__(
        self,
        report: Callable[..., None],
        latest: Callable[[], ray.tune.Checkpoint | None],
    ) -> None:
        self._report, self._latest = report, latest

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        folder = ray.tune.Checkpoint(str(checkpoint_dir)) if checkpoint_dir is not None else None
        self._report(metrics, checkpoint=folder)

    def restore(self) -> ray.tune.Checkpoint | None:
        return self._latest()

    def kept(self) -> list[KeptCheckpoint]:
        return []  # Tune keeps them; a plain function sees only its latest


def run_as_tune_function(
    job: FinetuneConfig,
    report: Callable[..., None] = ray.tune.report,
    latest: Callable[[], ray.tune.Checkpoint | None] = ray.tune.get_checkpoint,
) -> None:
    """The body of the plain Tune function: the loop on `job`, here, its data tokenized here,
    every evaluation reported through `report(metrics, checkpoint=...)` (what a user's own loop
    would call where it evaluates)."""
    run_loop(job, TuneFunctionReporter(report, latest))


@dataclass(frozen=True)
class TuneFunctionSettings:
    """What the plain Tune baseline sets: the trial's resources and Tune's own settings."""

    resources: dict[str, float]
    tune_config: ray.tune.TuneConfig
    checkpoint_config: ray.tune.CheckpointConfig


def tune_function_settings(base: dict[str, Any], trials: int, tuned: bool) -> TuneFunctionSettings:
    """The one worker's resources held by the trial itself, the job's `checkpoints_to_keep`
    by its monitored metric, and (tuned) reused trial actors: torch and the model libraries
    are imported once per sweep, not per trial."""
    cfg = parse_config(base)
    t = cfg.training
    return TuneFunctionSettings(
        resources=worker_resources(cfg.scaling),
        tune_config=ray.tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=1, reuse_actors=tuned
        ),
        checkpoint_config=ray.tune.CheckpointConfig(
            num_to_keep=t.checkpoints_to_keep,
            checkpoint_score_attribute=t.monitor,
            checkpoint_score_order=Objective.of(t.monitor).mode,
        ),
    )


def run_tune_function(
    base: dict[str, Any], trials: int, storage: str, clock: TrialClock, tuned: bool
) -> Run:
    def trial(params: dict[str, Any]) -> None:
        run_as_tune_function(trial_job(base, params, ray.tune.get_context().get_trial_id()))

    settings = tune_function_settings(base, trials, tuned)
    tick = time.monotonic()
    ray.tune.Tuner(
        ray.tune.with_resources(trial, settings.resources),
        param_space={"optimizer.lr": ray.tune.loguniform(*SPACE_LR)},
        tune_config=settings.tune_config,
        run_config=ray.tune.RunConfig(
            name="tune-fn",
            storage_path=storage,
            checkpoint_config=settings.checkpoint_config,
            callbacks=[clock],
        ),
    ).fit()
    return Run(str(Path(storage) / "tune-fn"), time.monotonic() - tick)


# --- tune-train: Tune + a TorchTrainer per trial ---------------------------------------------


def train_fn_with_the_loop_imported(config: dict[str, Any]) -> None:
    """The per-worker entry as a user writes it by default: the loop imported with its module
    (torch and the model libraries in Train's controller too), unlike the product's
    `train_fn_per_worker`, which imports it on the workers only."""
    job, inputs = read_loop_config(config)
    run_loop(job, TrainReporter(), inputs)


def run_tune_train(
    base: dict[str, Any], trials: int, storage: str, clock: TrialClock, tuned: bool
) -> Run:
    train_storage = str(Path(storage) / "tune-train-runs")

    def trial(params: dict[str, Any]) -> None:
        if tuned:  # environment variables Train reads in the trial's process
            os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # one node
        trial_id = ray.tune.get_context().get_trial_id()
        cfg = trial_job(base, params, trial_id)
        s = cfg.scaling
        TorchTrainer(
            train_fn_per_worker if tuned else train_fn_with_the_loop_imported,
            train_loop_config=loop_config(cfg),
            scaling_config=ScalingConfig(
                num_workers=s.num_workers, resources_per_worker={"CPU": s.cpus_per_worker}
            ),
            run_config=RunConfig(
                name=trial_id, storage_path=train_storage, callbacks=[TuneReportCallback()]
            ),
        ).fit()

    tick = time.monotonic()
    ray.tune.Tuner(
        # The trial function itself needs no CPU: its Train workers hold both.
        ray.tune.with_resources(trial, {"CPU": 0, "memory": 1 << 20}),
        param_space={"optimizer.lr": ray.tune.loguniform(*SPACE_LR)},
        tune_config=ray.tune.TuneConfig(num_samples=trials, max_concurrent_trials=1),
        run_config=ray.tune.RunConfig(name="tune-train", storage_path=storage, callbacks=[clock]),
    ).fit()
    return Run(str(Path(storage) / "tune-train"), time.monotonic() - tick)


# --- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One sweep of one path: its Tune experiment folder and wall times."""

    folder: str
    wall_s: float
    prepare_s: float = 0.0


@dataclass
class Measured:
    """A path's trials over every round."""

    overhead_s: list[float] = field(default_factory=list)
    trial_s: list[float] = field(default_factory=list)
    step_s: float = 0.0
    slot_s: float = 0.0
    wall_s: list[float] = field(default_factory=list)
    prepare_s: list[float] = field(default_factory=list)
    #: (steps, rows, evaluations, checkpoints) of every trial.
    work: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def utilisation(self) -> float:
        return self.step_s / self.slot_s


def work_done(df: Any) -> tuple[int, int, int, int]:
    """A trial's steps, rows trained, evaluations and checkpoints, from its own reports."""
    # The sweep path and TuneReportCallback name Train's checkpoint; Tune names its own.
    saved = [df[c] for c in (CHECKPOINT_PATH_KEY, "checkpoint_dir_name") if c in df]
    return (
        int(df["step"].max()),
        round(float((df["samples_per_second"] * df["step_seconds"]).sum())),
        int(df["val_loss"].notna().sum()),
        int(saved[0].notna().sum()) if saved else -1,  # -1: not found in the reports
    )


def measure(run: Run, clock: TrialClock, into: Measured, slots: int = 1) -> float:
    """Adds `run`'s trials to `into`; returns this run's median overhead."""
    analysis = ray.tune.ExperimentAnalysis(run.folder)
    frames = analysis.trial_dataframes
    steps = {t.trial_id: float(frames[t.trial_id]["step_seconds"].sum()) for t in analysis.trials}
    finished = [tid for tid in steps if tid in clock.start and tid in clock.end]
    overhead = [clock.end[t] - clock.start[t] - steps[t] for t in finished]
    into.overhead_s += overhead
    into.trial_s += [clock.end[t] - clock.start[t] for t in finished]
    into.step_s += sum(steps.values())
    into.slot_s += slots * (max(clock.end.values()) - min(clock.start.values()))
    into.wall_s.append(run.wall_s)
    into.prepare_s.append(run.prepare_s)
    into.work += [work_done(frames[t]) for t in finished]
    return statistics.median(overhead)


def spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=16, help="trials per sweep")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per trial")
    parser.add_argument("--rounds", type=int, default=3, help="sweeps of each path")
    parser.add_argument("--only", choices=list(LABELS), default=None)
    parser.add_argument("--baseline", choices=["tuned", "defaults"], default="tuned")
    parser.add_argument(
        "--workers",
        type=int,
        choices=[1, 2],
        default=2,
        help="workers per trial (1: the sweep path runs the loop in the trial's process, and "
        "the plain Tune function baseline applies)",
    )
    args = parser.parse_args()
    tuned = args.baseline == "tuned"
    paths: dict[str, Callable[[dict[str, Any], int, str, TrialClock], Run]] = {
        "sweeps": run_sweeps,
        "tune-fn": functools.partial(run_tune_function, tuned=tuned),
        "tune-train": functools.partial(run_tune_train, tuned=tuned),
    }
    if args.workers > 1:  # a job of more workers needs Train's worker group
        del paths["tune-fn"]
    if args.only:
        paths = {args.only: paths[args.only]}

    ray.init(num_cpus=2, log_to_driver=False)
    results = {name: Measured() for name in paths}
    medians: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = job(build_tiny_bert(Path(tmp) / "tiny"), args.steps, args.workers)
        names = list(paths)
        for r in range(args.rounds):
            medians.append({})
            for name in names[r % len(names) :] + names[: r % len(names)]:
                clock = TrialClock()
                run = paths[name](base, args.trials, str(Path(tmp) / f"{name}-{r}"), clock)
                medians[-1][name] = measure(run, clock, results[name])
                print(
                    f"round {r + 1}: {LABELS[name]} overhead median {medians[-1][name]:.2f}s, "
                    f"sweep wall {run.wall_s:.1f}s",
                    flush=True,
                )

    w = args.workers
    print(
        f"\n{args.rounds} round(s) x {args.trials} trials x {args.steps} steps per path, "
        f"{w} worker(s) x {2 // w} CPU, one trial at a time; baselines: {args.baseline} settings"
    )
    print("work per trial (from its reports): steps, rows trained, evaluations, checkpoints")
    for name, m in results.items():
        s, rows, evals, ckpts = (spread(list(c)) for c in zip(*m.work, strict=True))
        print(
            f"  {LABELS[name]:22s} {len(m.work)} trials: steps {s}, rows {rows}, "
            f"evaluations {evals}, checkpoints {ckpts}"
        )
    if "sweeps" in results:
        print(
            "  sweeps tokenizes the data once per sweep before its first trial (median "
            f"{statistics.median(results['sweeps'].prepare_s):.2f}s, in its whole-sweep wall "
            "time, not in a trial's); the baselines tokenize inside every trial"
        )
    header = f"{'path':22s} {'util':>6s} {'ovh med':>8s} {'ovh max':>8s} {'trial med':>9s}"
    print(header + f" {'sweep wall med':>14s}")
    for name, m in results.items():
        print(
            f"{LABELS[name]:22s} {m.utilisation:6.1%} {statistics.median(m.overhead_s):7.2f}s "
            f"{max(m.overhead_s):7.2f}s {statistics.median(m.trial_s):8.2f}s "
            f"{statistics.median(m.wall_s):13.1f}s"
        )
    if "sweeps" not in results or len(results) < 2:
        return
    ours = results["sweeps"]
    for name in [n for n in ("tune-fn", "tune-train") if n in results]:
        other = results[name]
        ratio = statistics.median(m["sweeps"] / m[name] for m in medians)
        wall = statistics.median(a / b for a, b in zip(ours.wall_s, other.wall_s, strict=True))
        print(
            f"vs {LABELS[name]}: overhead per trial (median) "
            f"{statistics.median(ours.overhead_s):.2f}s vs "
            f"{statistics.median(other.overhead_s):.2f}s = {ratio:.2f}x (median of rounds); "
            f"utilisation {ours.utilisation:.1%} vs {other.utilisation:.1%}; "
            f"whole sweep wall {wall:.2f}x"
        )
    print(
        "overhead per trial: "
        + ", ".join(
            f"{LABELS[n].split(' (')[0]} {statistics.median(results[n].overhead_s):.2f} s"
            for n in ("sweeps", "tune-fn", "tune-train")
            if n in results
        )
    )
    print(
        "whole sweep wall time (median): "
        + ", ".join(
            f"{LABELS[n].split(' (')[0]} {statistics.median(results[n].wall_s):.1f} s"
            + (
                f" (incl. {statistics.median(ours.prepare_s):.2f} s preparing data once)"
                if n == "sweeps"
                else ""
            )
            for n in ("sweeps", "tune-fn", "tune-train")
            if n in results
        )
    )


if __name__ == "__main__":
    main()
