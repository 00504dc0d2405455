"""`model.method: full | lora | head` side by side: what trains, how fast, memory, accuracy.

Each method fine-tunes the embedded MiniLM (`embedded:all-MiniLM-L6-v2`) through this project's
real path: `trainables.trainer.build_trainer` -> a 1-worker Ray `TorchTrainer` (2 CPUs) running
`trainables.trainer.train_fn_per_worker` (the loop of `trainables.loop`). Every method gets the
same:

- rows: 2,000 training rows from a seeded shuffle of SST-2 train.tsv; validation = 500 other
  rows of that shuffle (given as a `validation` file; rows whose sentence also occurs in the
  training sample are skipped), and the whole of dev.tsv (872 sentences) as the `test` split,
  evaluated once at the end;
- batch 32, max_length 64, seed 0, fp32, AdamW (weight decay 0.01, clip 1.0), the same number
  of optimizer steps (`--steps`, default 120, ~1.9 epochs) with a report every `--steps / 4`;
- schedule `constant`, no warmup: each method then trains at exactly its stated rate for the
  whole run, and a report's accuracy at step k does not depend on how long `--steps` is (a
  linear decay would tie every intermediate point to the total and give the shorter runs a
  different LR curve).

Only the learning rate differs, each at a usual best for its method, since a shared rate would
starve one side: full 5e-5, LoRA 5e-4, head 2e-3 (`--lr-full`, `--lr-lora`, `--lr-head`).
LoRA: r 8, alpha 16, dropout 0.1, peft's default targets for BERT (attention query, value);
the new head trains in full under every method.

Measured, per method:

- trainable parameters: counted in this driver process on the model built the way the loop
  builds it (`prepare_task(cfg).build_model(cfg.model)`), `requires_grad` ones over all;
- training samples/s: rows / `step_seconds` summed over the reports after the first (the first
  window holds the warm-up); training steps only, not evaluation or checkpointing;
- peak RSS: `ru_maxrss` of the training worker process, read at the end of the run (the whole
  run: data, model, training, evaluations, checkpoint saving), and the same read just before the
  first checkpoint is written (training and one evaluation only). The Train controller and this
  driver are not counted;
- validation accuracy at every report, the last one after `--steps` steps; dev.tsv accuracy.

Methods run one after another in this process, in the order full, lora, head; with `--reps N`
the order reverses every other repetition and the table shows medians.

    PYTHONPATH=$PWD .venv/bin/python bench/lora_methods.py [--steps 120] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.config import EMBEDDED_MODEL, FinetuneConfig, parse_config

# The workplace's shared copy (`../shared/data`): benchmarks only, never the product.
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"

METHODS = ("full", "lora", "head")
TRAIN_ROWS, VAL_ROWS = 2000, 500
BATCH_SIZE, MAX_LENGTH, SEED, CPUS = 32, 64, 0, 2
LORA = {"r": 8, "alpha": 16, "dropout": 0.1}
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4, "head": 2e-3}


@dataclass(frozen=True)
class Splits:
    """The TSV files every method reads, and what went into them."""

    train: str
    validation: str
    test: str
    skipped_duplicates: int


@dataclass(frozen=True)
class ParamCount:
    """Parameters of one method's model as the loop builds it."""

    trainable: int
    total: int

    def percent(self) -> float:
        """Trainable share of the model's own parameters, in percent."""
        return 100.0 * self.trainable / self.total


@dataclass(frozen=True)
class RunResult:
    """What one training run of one method measured."""

    method: str
    samples_per_second: float
    peak_rss_mb: float
    rss_before_checkpoint_mb: float
    val_accuracy: float
    test_accuracy: float
    curve: list[tuple[int, float]]
    steps: int
    threads: int
    pid: int
    wall_seconds: float


def sample_sst2(data_dir: Path, out: Path) -> Splits:
    """Writes train (first `TRAIN_ROWS` of a seeded shuffle of train.tsv), validation (the next
    `VAL_ROWS` whose sentence is not in train) and test (all of dev.tsv) as TSVs in `out`."""
    import numpy as np

    lines = (data_dir / "train.tsv").read_text().splitlines()
    header, body = lines[0], lines[1:]
    sentence = header.split("\t").index("sentence")
    order = np.random.default_rng(SEED).permutation(len(body))
    train = [body[i] for i in order[:TRAIN_ROWS]]
    seen = {row.split("\t")[sentence].strip() for row in train}
    validation: list[str] = []
    skipped = 0
    for i in order[TRAIN_ROWS:]:
        if len(validation) == VAL_ROWS:
            break
        if body[i].split("\t")[sentence].strip() in seen:
            skipped += 1
            continue
        validation.append(body[i])
    files = {"train": train, "validation": validation}
    for name, rows in files.items():
        (out / f"{name}.tsv").write_text("\n".join([header, *rows]) + "\n")
    shutil.copyfile(data_dir / "dev.tsv", out / "dev.tsv")
    return Splits(
        str(out / "train.tsv"), str(out / "validation.tsv"), str(out / "dev.tsv"), skipped
    )


def method_config(method: str, lr: float, steps: int, splits: Splits) -> FinetuneConfig:
    """The job of one method: everything but `model.method` and the LR is shared."""
    return parse_config(
        {
            "name": f"lora-bench-{method}",
            "model": {"name_or_path": EMBEDDED_MODEL, "method": method, "lora": LORA},
            "data": {
                "train": splits.train,
                "validation": splits.validation,
                "test": splits.test,
                "text_column": "sentence",
                "label_column": "label",
                "max_length": MAX_LENGTH,
            },
            "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 0.01},
            "schedule": {"name": "constant", "warmup_steps": 0},
            "training": {
                "batch_size": BATCH_SIZE,
                "max_steps": steps,
                "eval_every": max(1, steps // 4),
                "precision": "fp32",
                "seed": SEED,
                # Every report's metrics come back through its checkpoint: keep them all.
                "checkpoints_to_keep": None,
            },
            "scaling": {"num_workers": 1, "cpus_per_worker": CPUS},
        }
    )


def count_parameters(cfgs: dict[str, FinetuneConfig]) -> dict[str, ParamCount]:
    """Trainable and total parameters of each method's model, built as the loop builds it."""
    import torch

    from trainables.tasks import prepare_task

    task = prepare_task(next(iter(cfgs.values())))  # the data is the same for every method
    counts = {}
    for method, cfg in cfgs.items():
        torch.manual_seed(cfg.training.seed)
        model = task.build_model(cfg.model)
        params = list(model.parameters())
        counts[method] = ParamCount(
            trainable=sum(p.numel() for p in params if p.requires_grad),
            total=sum(p.numel() for p in params),
        )
        del model, params
    return counts


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def with_probe(train_fn: Callable[[dict[str, Any]], None], out_file: str) -> Callable:
    """`train_fn` (the real loop, unchanged) plus a record of this worker process: its pid,
    torch threads, peak RSS before the first checkpoint is written and at the end."""

    def measured(config: dict[str, Any]) -> None:
        import torch

        import trainables.loop

        before: list[float] = []
        save = trainables.loop.save_checkpoint

        def save_and_note(*args: Any, **kwargs: Any) -> None:
            if not before:
                before.append(peak_rss_mb())
            save(*args, **kwargs)

        # Read once per run by the loop (functools.partial at its start), so this sees every
        # checkpoint; the saving itself is the loop's own.
        trainables.loop.save_checkpoint = save_and_note
        try:
            train_fn(config)
        finally:
            trainables.loop.save_checkpoint = save
        record = {
            "pid": os.getpid(),
            "threads": torch.get_num_threads(),
            "rss_before_checkpoint_mb": before[0] if before else float("nan"),
            "peak_rss_mb": peak_rss_mb(),
        }
        Path(out_file).write_text(json.dumps(record))

    return measured


def run_method(cfg: FinetuneConfig, storage: str, tag: str) -> RunResult:
    """One method's run through `build_trainer`, and what its reports and worker recorded."""
    from trainables.trainer import build_trainer, train_fn_per_worker

    probe = os.path.join(storage, f"{tag}-probe.json")
    trainer = build_trainer(
        cfg, run_name=tag, storage_path=storage, train_fn=with_probe(train_fn_per_worker, probe)
    )
    start = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - start
    reports = sorted((m for _, m in result.best_checkpoints), key=lambda m: m["step"])
    if len(reports) < 2:
        raise SystemExit(f"{tag}: {len(reports)} report(s); need >= 2 (raise --steps)")
    timed = reports[1:]
    rows = sum(m["samples_per_second"] * m["step_seconds"] for m in timed)
    seconds = sum(m["step_seconds"] for m in timed)
    worker = json.loads(Path(probe).read_text())
    last = reports[-1]
    return RunResult(
        method=cfg.model.method,
        samples_per_second=rows / seconds,
        peak_rss_mb=worker["peak_rss_mb"],
        rss_before_checkpoint_mb=worker["rss_before_checkpoint_mb"],
        val_accuracy=last["val_accuracy"],
        test_accuracy=last.get("test_accuracy", float("nan")),
        curve=[(int(m["step"]), m["val_accuracy"]) for m in reports],
        steps=int(last["step"]),
        threads=worker["threads"],
        pid=worker["pid"],
        wall_seconds=wall,
    )


def print_run(run: RunResult, rep: int) -> None:
    """One finished run, as it finishes."""
    curve = "  ".join(f"{step}:{acc:.3f}" for step, acc in run.curve)
    print(
        f"[rep {rep + 1}] {run.method:4s}  {run.samples_per_second:6.1f} samples/s  "
        f"peak RSS {run.peak_rss_mb:5.0f} MB "
        f"(before 1st checkpoint {run.rss_before_checkpoint_mb:5.0f})  "
        f"val acc by step {curve}  dev acc {run.test_accuracy:.3f}  "
        f"[worker pid {run.pid}, {run.threads} threads, fit {run.wall_seconds:.0f} s]",
        flush=True,
    )


def print_table(
    runs: dict[str, list[RunResult]],
    counts: dict[str, ParamCount],
    lrs: dict[str, float],
    steps: int,
) -> None:
    """The methods side by side (medians over repetitions), with ratios against full."""
    med = {
        m: {
            "sps": statistics.median(r.samples_per_second for r in rs),
            "rss": statistics.median(r.peak_rss_mb for r in rs),
            "rss0": statistics.median(r.rss_before_checkpoint_mb for r in rs),
            "val": statistics.median(r.val_accuracy for r in rs),
            "dev": statistics.median(r.test_accuracy for r in rs),
        }
        for m, rs in runs.items()
    }
    full = med["full"]
    head = (
        f"{'method':6s} {'lr':>7s} {'trainable':>11s} {'% total':>8s} {'samples/s':>10s} "
        f"{'vs full':>8s} {'peak RSS':>9s} {'pre-ckpt':>9s} {f'val@{steps}':>8s} {'dev':>6s}"
    )
    print(head)
    print("-" * len(head))
    for m in METHODS:
        c, r = counts[m], med[m]
        print(
            f"{m:6s} {lrs[m]:7.0e} {c.trainable:11,d} {c.percent():7.3g}% {r['sps']:10.1f} "
            f"{r['sps'] / full['sps']:7.2f}x {r['rss']:6.0f} MB {r['rss0']:6.0f} MB "
            f"{r['val']:8.3f} {r['dev']:6.3f}"
        )
    reps = len(next(iter(runs.values())))
    spread = {m: sorted(r.samples_per_second for r in rs) for m, rs in runs.items()}
    if reps > 1:
        print("samples/s per rep (sorted): " + "; ".join(f"{m} {v}" for m, v in spread.items()))
        vals = {m: sorted({round(r.val_accuracy, 4) for r in rs}) for m, rs in runs.items()}
        print("distinct val acc over reps: " + "; ".join(f"{m} {v}" for m, v in vals.items()))


def main() -> None:
    """Samples the rows, counts parameters, runs every method (and rep), prints the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps per method")
    parser.add_argument("--reps", type=int, default=1, help="repetitions, order alternating")
    parser.add_argument("--lr-full", type=float, default=DEFAULT_LR["full"])
    parser.add_argument("--lr-lora", type=float, default=DEFAULT_LR["lora"])
    parser.add_argument("--lr-head", type=float, default=DEFAULT_LR["head"])
    parser.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"),
        help="folder with SST-2 train.tsv and dev.tsv",
    )
    args = parser.parse_args()
    lrs = {"full": args.lr_full, "lora": args.lr_lora, "head": args.lr_head}

    work = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    try:
        splits = sample_sst2(Path(args.data), work)
        cfgs = {m: method_config(m, lrs[m], args.steps, splits) for m in METHODS}
        every = cfgs["full"].training.eval_every
        print(
            f"SST-2: {TRAIN_ROWS} train rows (seeded shuffle of train.tsv, seed {SEED}), "
            f"{VAL_ROWS} other train rows as validation ({splits.skipped_duplicates} skipped: "
            f"sentence also in train), dev.tsv as test. Batch {BATCH_SIZE}, max_length "
            f"{MAX_LENGTH}, {args.steps} steps, report every {every}, constant LR, no warmup, "
            f"AdamW wd 0.01, fp32, 1 worker x {CPUS} CPUs.",
            flush=True,
        )
        print(
            "LR: " + ", ".join(f"{m} {lrs[m]:.0e}" for m in METHODS) + f". LoRA r {LORA['r']}, "
            f"alpha {LORA['alpha']}, dropout {LORA['dropout']}, peft default targets "
            f"(query, value). Order: {', '.join(METHODS)}"
            + (", reversed every other rep." if args.reps > 1 else "."),
            flush=True,
        )
        counts = count_parameters(cfgs)
        for m, c in counts.items():
            print(f"params {m:4s}: {c.trainable:,} trainable of {c.total:,} ({c.percent():.3g}%)")

        import ray

        ray.init(num_cpus=CPUS, log_to_driver=False)
        runs: dict[str, list[RunResult]] = {m: [] for m in METHODS}
        try:
            for rep in range(args.reps):
                order = METHODS if rep % 2 == 0 else METHODS[::-1]
                for m in order:
                    run = run_method(cfgs[m], str(work / "storage"), f"{m}-rep{rep}")
                    runs[m].append(run)
                    print_run(run, rep)
        finally:
            ray.shutdown()
        print()
        print(
            f"Medians over {args.reps} rep(s). samples/s: training steps after the first report; "
            "peak RSS: the training worker only (controller and driver not counted), whole run; "
            "pre-ckpt: the same just before its first checkpoint; % total: of that model's own "
            "parameters (LoRA's include its adapters and peft's copy of the head)."
        )
        print_table(runs, counts, lrs, args.steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
