"""A sweep's bookkeeping against the number of trials: does each report cost the same at trial
1,000 as at trial 10?

Two parts, one command:

1. The driver's callbacks alone (the results log with its journal and rewrites, the progress
   line), driven as Tune's controller drives them (each trial's start, reports and end timed),
   for `--trials` trials of `--reports` reports each on local storage: the mean bookkeeping
   time per report over the first tenth of the trials and over the last, their ratio (flat: ~1x),
   and the driver's peak RSS.
2. The same trials through Ray Tune with a cheap function trainable (no model; it sleeps
   `--sleep-ms` per report): plain Tune (baseline) against Tune with those callbacks, after a
   warm-up run, `--reps` alternating repetitions, medians; wall time, its ratio, and the sleep
   floor.

W&B is not in either (a thousand offline runs would measure W&B's start-up, not this code).

    PYTHONPATH=$PWD .venv/bin/python bench/bookkeeping.py --trials 1000
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sweeps.results.progress import SweepProgress
from sweeps.results.results_file import read_results
from sweeps.results.results_log import ResultsLog
from trainables.objective import Objective

OBJECTIVE = Objective("val_accuracy", "max")


class Planned:
    def __init__(self, reports: int) -> None:
        self.reports = reports

    def __call__(self, params: dict[str, Any]) -> int:
        return self.reports


def callbacks(folder: Path, trials: int, reports: int) -> list[Any]:
    return [
        ResultsLog(str(folder / "results.parquet"), Planned(reports)),
        SweepProgress("bench", OBJECTIVE, trials, Planned(reports), io.StringIO()),
    ]


def drive_callbacks(trials: int, reports: int) -> None:
    """Part 1: each report's bookkeeping timed, as Tune's controller calls it."""
    with tempfile.TemporaryDirectory() as tmp:
        hooks = callbacks(Path(tmp), trials, reports)
        all_trials: list[SimpleNamespace] = []
        per_trial: list[float] = []
        for i in range(trials):
            trial = SimpleNamespace(
                trial_id=f"{i:05d}", config={"lr": 1e-4 * (1 + i % 7)}, status="RUNNING"
            )
            all_trials.append(trial)
            began = time.perf_counter()
            for hook in hooks:
                hook.on_trial_start(i, all_trials, trial)
            spent = time.perf_counter() - began
            for step in range(1, reports + 1):
                result = {
                    "training_iteration": step,
                    "step": step,
                    "val_accuracy": (i % 13 + step) / 100,
                    "timestamp": time.time(),
                    "config": trial.config,
                    "done": False,
                }
                began = time.perf_counter()
                for hook in hooks:
                    hook.on_trial_result(i, all_trials, trial, result)
                spent += time.perf_counter() - began
            trial.status = "TERMINATED"
            began = time.perf_counter()
            for hook in hooks:
                hook.on_trial_complete(i, all_trials, trial)
            spent += time.perf_counter() - began
            per_trial.append(spent / reports)  # the trial's start and end shared by its reports
        began = time.perf_counter()
        for hook in hooks:
            hook.on_experiment_end(all_trials)
        end_s = time.perf_counter() - began
        rows = len(read_results(str(Path(tmp) / "results.parquet")))
    # Windows of a tenth of the trials: a rewrite lands in some trials and not others.
    window = max(1, trials // 10)
    first = statistics.mean(per_trial[:window]) * 1e6
    last = statistics.mean(per_trial[-window:]) * 1e6
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"callbacks: {trials} trials x {reports} reports, {rows} rows kept")
    print(
        f"  bookkeeping per report: trials 1-{window} {first:.0f} us, "
        f"trials {trials - window + 1}-{trials} {last:.0f} us"
    )
    print(f"  ratio last/first: {last / first:.2f}x; experiment end {end_s:.2f} s")
    print(f"  driver peak RSS {rss:.0f} MB")


def cheap(config: dict[str, Any]) -> None:
    import ray.tune

    for step in range(1, config["reports"] + 1):
        time.sleep(config["sleep_s"])
        ray.tune.report({"step": step, "val_accuracy": config["lr"] * step})


def through_tune(trials: int, reports: int, sleep_ms: float, ours: bool) -> float:
    import ray.tune

    with tempfile.TemporaryDirectory() as tmp:
        hooks = callbacks(Path(tmp) / "bench", trials, reports) if ours else []
        tuner = ray.tune.Tuner(
            ray.tune.with_resources(cheap, {"CPU": 0.5}),
            param_space={
                "lr": ray.tune.uniform(1e-5, 1e-3),
                "reports": reports,
                "sleep_s": sleep_ms / 1000,
            },
            tune_config=ray.tune.TuneConfig(num_samples=trials, reuse_actors=True),
            run_config=ray.tune.RunConfig(
                name="bench", storage_path=tmp, callbacks=hooks, verbose=0
            ),
        )
        began = time.perf_counter()
        tuner.fit()
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=5)
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--skip-tune", action="store_true")
    args = parser.parse_args()
    drive_callbacks(args.trials, args.reports)
    if args.skip_tune:
        return
    import ray

    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    floor = args.trials * args.reports * args.sleep_ms / 1000 / 4  # 4 trials at a time
    through_tune(20, args.reports, args.sleep_ms, ours=False)  # warm-up: actors, imports
    plain, with_ours = [], []
    for rep in range(1, args.reps + 1):  # alternating, so neither side always goes first
        plain.append(through_tune(args.trials, args.reports, args.sleep_ms, ours=False))
        with_ours.append(through_tune(args.trials, args.reports, args.sleep_ms, ours=True))
        timings = f"plain Tune {plain[-1]:.1f} s, with this sweep's callbacks {with_ours[-1]:.1f} s"
        print(f"[{rep}] {timings}")
    ray.shutdown()
    p, o = statistics.median(plain), statistics.median(with_ours)
    print(f"through Tune: {args.trials} trials x {args.reports} reports, {args.sleep_ms} ms each")
    print(f"  median: plain Tune {p:.1f} s, with this sweep's callbacks {o:.1f} s")
    print(f"  sleep floor {floor:.1f} s (4 trials at a time)")
    print(f"ratio vs plain Tune: {o / p:.2f}x wall")


if __name__ == "__main__":
    main()
