"""What does running a trial inside a sweep cost, beyond its training steps?

Runs the same short trials (a tiny random BERT, fixed steps, 2 DDP workers x 1 CPU each or with
`--workers 1` one worker x 2 CPUs, one trial at a time on this 2-core machine) through two
paths, and prints for each:

- slot utilisation = training-step seconds / slot-seconds, where slot-seconds are the
  concurrent-trial slots times the wall time from the first trial's start to the last one's end;
- per-trial overhead = trial wall (Tune starts it -> Tune sees it finish) minus its training-step
  seconds (the loop's reported `step_seconds`), median and max.

Paths:
- baseline: a plain Ray 2.60 Tune-over-Train sweep: a Tune function trial that builds a
  `TorchTrainer` (our per-worker loop) with `TuneReportCallback`. By default (`--baseline
  tuned`) it gets the settings a user could set as well, the ones this project sets: Train's
  health-check interval 0.2 s, no preemption watcher on a one-node cluster, and an entry
  function that imports the loop only on the workers; `--baseline defaults` is Ray's defaults;
- ours: `sweeps.running.runner.run_sweep` on the equivalent spec (a one-worker trial runs its
  loop in the Tune trial's own process, `trainables/in_process.py`).

    .venv/bin/python bench/sweep_overhead.py [--trials 16] [--steps 400] [--workers 2]
        [--only ours] [--baseline tuned]

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
from pathlib import Path
from typing import Any

import ray
import ray.tune
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from sweeps.running.runner import run_sweep
from sweeps.spec import apply_params, parse_spec
from trainables.config import parse_config
from trainables.loop import train_fn_per_worker
from trainables.tiny import build_tiny_bert
from trainables.trainer import HEALTH_CHECK_INTERVAL_S, run_loop


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


def run_ours(base: dict[str, Any], trials: int, storage: str, clock: TrialClock) -> str:
    spec = parse_spec(
        {
            "name": "ours",
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
    run_sweep(spec, callbacks=[clock])
    return str(Path(storage) / "ours")


def run_baseline(
    base: dict[str, Any], trials: int, storage: str, clock: TrialClock, tuned: bool
) -> str:
    train_storage = str(Path(storage) / "baseline-train")

    def trial(params: dict[str, Any]) -> None:
        if tuned:  # environment variables Train reads in the trial's process
            os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # one node
        trial_id = ray.tune.get_context().get_trial_id()
        cfg = apply_params(parse_config(base), params, name=trial_id)
        s = cfg.scaling
        TorchTrainer(
            run_loop if tuned else train_fn_per_worker,
            train_loop_config=cfg.model_dump(mode="json"),
            scaling_config=ScalingConfig(
                num_workers=s.num_workers, resources_per_worker={"CPU": s.cpus_per_worker}
            ),
            run_config=RunConfig(
                name=trial_id, storage_path=train_storage, callbacks=[TuneReportCallback()]
            ),
        ).fit()

    ray.tune.Tuner(
        # The trial function itself needs no CPU: its Train workers hold both.
        ray.tune.with_resources(trial, {"CPU": 0, "memory": 1 << 20}),
        param_space={"optimizer.lr": ray.tune.loguniform(*SPACE_LR)},
        tune_config=ray.tune.TuneConfig(num_samples=trials, max_concurrent_trials=1),
        run_config=ray.tune.RunConfig(name="baseline", storage_path=storage, callbacks=[clock]),
    ).fit()
    return str(Path(storage) / "baseline")


def measure(folder: str, clock: TrialClock, slots: int) -> dict[str, float]:
    analysis = ray.tune.ExperimentAnalysis(folder)
    steps = {
        t.trial_id: float(analysis.trial_dataframes[t.trial_id]["step_seconds"].sum())
        for t in analysis.trials
    }
    finished = [tid for tid in steps if tid in clock.start and tid in clock.end]
    overhead = [clock.end[t] - clock.start[t] - steps[t] for t in finished]
    span = max(clock.end.values()) - min(clock.start.values())
    return {
        "trials": len(finished),
        "step_s": sum(steps.values()),
        "span_s": span,
        "utilisation": sum(steps.values()) / (slots * span),
        "overhead_median_s": statistics.median(overhead),
        "overhead_max_s": max(overhead),
        "trial_median_s": statistics.median(clock.end[t] - clock.start[t] for t in finished),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per trial")
    parser.add_argument("--only", choices=["ours", "baseline"], default=None)
    parser.add_argument("--baseline", choices=["tuned", "defaults"], default="tuned")
    parser.add_argument(
        "--workers",
        type=int,
        choices=[1, 2],
        default=2,
        help="workers per trial (1: ours runs the loop in the trial's process, no TorchTrainer)",
    )
    args = parser.parse_args()

    ray.init(num_cpus=2, log_to_driver=False)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = job(build_tiny_bert(Path(tmp) / "tiny"), args.steps, args.workers)
        tuned = args.baseline == "tuned"
        paths: dict[str, Callable[[dict[str, Any], int, str, TrialClock], str]] = {
            "baseline": functools.partial(run_baseline, tuned=tuned),
            "ours": run_ours,
        }
        for name, run in paths.items():
            if args.only and name != args.only:
                continue
            clock = TrialClock()
            folder = run(base, args.trials, str(Path(tmp) / name), clock)
            results[name] = measure(folder, clock, slots=1)

    w = args.workers
    print(
        f"\n{args.trials} trials x {args.steps} steps, {w} worker(s) x {2 // w} CPU, "
        "one trial at a time"
    )
    print(f"baseline: plain Tune + Train with {args.baseline} settings")
    print(
        f"{'path':10s} {'util':>6s} {'ovh med':>8s} {'ovh max':>8s} {'trial med':>9s} {'span':>7s}"
    )
    for name, r in results.items():
        print(
            f"{name:10s} {r['utilisation']:6.1%} {r['overhead_median_s']:7.2f}s "
            f"{r['overhead_max_s']:7.2f}s {r['trial_median_s']:8.2f}s {r['span_s']:6.1f}s"
        )
    if len(results) == 2:
        ours, base_r = results["ours"], results["baseline"]
        print(
            f"overhead per trial (median): {ours['overhead_median_s']:.2f}s vs "
            f"{base_r['overhead_median_s']:.2f}s baseline = "
            f"{ours['overhead_median_s'] / base_r['overhead_median_s']:.2f}x; utilisation "
            f"{ours['utilisation']:.1%} vs {base_r['utilisation']:.1%}"
        )


if __name__ == "__main__":
    main()
