"""Search quality, live: PBT, tpe+asha and random search at the same wall budget.

PBT cannot be replayed from recorded curves (its trials continue from each other's
checkpoints with changed hyperparameters), so this runs real sweeps through `sweeps.run`: the
embedded MiniLM on the SST-2 subset `bench/search_quality_record.py` records on (1,500 train
rows drawn with seed 0, 20% carved off as validation; the SST-2 dev file is the test split),
each method for the same `search.time_budget_s`, `--reps` repetitions each (search seed = rep).
Printed: per repetition the trials run and the chosen model's validation and test accuracy
(the best trial's best checkpoint, as `sweeps best` and promotion pick it, evaluated on the
test split), and per method the median test accuracy.

    PYTHONPATH=$PWD .venv/bin/python bench/search_quality_live.py [--budget-s 180] [--reps 3]

All three search one space (learning rate 1e-6..1e-3 log, weight decay 0..0.1) with a constant
learning-rate schedule (PBT's perturbed rate then takes effect as is; the others get the same).
random and tpe+asha run one trial at a time on the whole machine (2 CPUs); PBT trains its
population of 4 side by side (half a CPU each), as `sweeps/examples/pbt.yaml` does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv

from bench.search_quality_record import MAX_LENGTH, SST2, SUBSET_ROWS, load_tables

BATCH = 32
EPOCHS = 2
EVAL_EVERY = 13  # steps: 3 evaluations per epoch of the 1,200 train rows at batch 32
SPACE: dict[str, Any] = {
    "optimizer.lr": {"loguniform": [1e-6, 1e-3]},
    "optimizer.weight_decay": {"uniform": [0.0, 0.1]},
}
METHODS: dict[str, dict[str, Any]] = {
    "random": {"method": "random", "scheduler": {"name": "fifo"}, "cpus": 2.0, "samples": 100},
    "tpe+asha": {
        "method": "tpe",
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3},
        "cpus": 2.0,
        "samples": 100,
    },
    "pbt": {
        "method": "random",
        "scheduler": {
            "name": "pbt",
            "perturbation_interval": 1,
            "quantile": 0.25,
            "resample_probability": 0.25,
        },
        "cpus": 0.5,
        "samples": 4,
    },
}


def spec_of(name: str, rep: int, train: str, storage: str, budget_s: float) -> dict[str, Any]:
    m = METHODS[name]
    return {
        "name": f"live-{name.replace('+', '-')}-{rep}",
        "storage_path": storage,
        "job": {
            "data": {
                "train": train,
                "test": str(SST2 / "dev.tsv"),
                "text_column": "sentence",
                "label_column": "label",
                "validation_fraction": 0.2,
                "max_length": MAX_LENGTH,
            },
            "schedule": {"name": "constant"},
            "training": {
                "batch_size": BATCH,
                "epochs": EPOCHS,
                "eval_every": EVAL_EVERY,
                "monitor": "val_accuracy",
                "precision": "fp32",
            },
            "scaling": {"num_workers": 1, "cpus_per_worker": m["cpus"]},
        },
        "search": {
            "method": m["method"],
            "metric": "val_accuracy",
            "mode": "max",
            "num_samples": m["samples"],
            "seed": rep,
            "time_budget_s": budget_s,
            "space": SPACE,
        },
        "scheduler": m["scheduler"],
        "wandb": {"mode": "disabled"},
    }


def run_one(name: str, rep: int, train: str, storage: str, budget_s: float) -> dict[str, Any]:
    import sweeps
    from sweeps.spec import apply_params
    from sweeps.store.model_versions import evaluate_checkpoint

    started = time.perf_counter()
    sweep = sweeps.run(spec_of(name, rep, train, storage, budget_s), restart=True)
    wall = time.perf_counter() - started
    best = sweep.best
    if best is None:
        return {"method": name, "rep": rep, "trials": 0, "val": None, "test": None, "wall": wall}
    job = apply_params(sweep.spec.job, best.params)
    test = evaluate_checkpoint(best.checkpoint, job) or {}
    return {
        "method": name,
        "rep": rep,
        "trials": int(sweep.trials["trial_id"].nunique()),
        "val": best.metrics.get("val_accuracy"),
        "test": test.get("test_accuracy"),
        "wall": wall,
        "lr": best.params.get("optimizer.lr"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget-s", type=float, default=180.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--first-rep", type=int, default=0, help="continue a run in parts")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args(argv)
    import ray

    # `sweeps.run` starts a local Ray runtime as `sweeps run` does, and each sweep gets a fresh
    # one, as separate `sweeps run` commands would. Not `ray.init` here with the dashboard off:
    # Train's placement-group cleaner needs the state API, and without it a trial the time
    # budget stopped kept its CPUs. And not one runtime for all sweeps: after the first PBT
    # sweep in a shared runtime, the next sweeps' trials never reported within their budget.
    with tempfile.TemporaryDirectory(prefix="search-quality-live-") as tmp:
        train = str(Path(tmp) / "train.csv")
        pacsv.write_csv(load_tables()["train"], train)
        out = []
        # Methods alternate within each repetition, so a drift of the machine hits all alike.
        for rep in range(args.first_rep, args.first_rep + args.reps):
            for name in args.methods:
                row = run_one(name, rep, train, str(Path(tmp) / "sweeps"), args.budget_s)
                ray.shutdown()
                out.append(row)
                print(
                    f"{name:9s} rep {rep}: {row['trials']:3d} trials, chosen val "
                    f"{row['val'] or float('nan'):.4f} test {row['test'] or float('nan'):.4f} "
                    f"(lr {row.get('lr') or float('nan'):.2g}), {row['wall']:.0f} s wall",
                    flush=True,
                )
    print(
        f"SST-2 subset ({SUBSET_ROWS} rows, 20% validation), test = SST-2 dev; "
        f"{args.budget_s:.0f} s wall budget per sweep, {args.reps} repetitions"
    )
    for name in args.methods:
        tests = [r["test"] for r in out if r["method"] == name and r["test"] is not None]
        per_rep = ", ".join(f"{t:.4f}" for t in tests)
        median = statistics.median(tests) if tests else float("nan")
        trials = statistics.mean(r["trials"] for r in out if r["method"] == name)
        print(
            f"{name:9s} test accuracy of the chosen model: median {median:.4f} ({per_rep}); "
            f"{trials:.1f} trials per sweep"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
