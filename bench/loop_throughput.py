"""This loop against HF `Trainer` at its best settings, like for like: training samples/s and
peak memory on identical data.

Both sides fine-tune the embedded MiniLM on the same SST-2 sample (same rows, batch size, max
length, seed, optimizer and LR), one epoch, CPU fp32, each run in a fresh process of its own
with its threads pinned (`OMP_NUM_THREADS`, `MKL_NUM_THREADS` and `torch.set_num_threads`, each
side prints what it ran with):

- baseline: `transformers.Trainer` with `DataCollatorWithPadding` (its dynamic padding) at its
  best setting for the task, `train_sampling_strategy="group_by_length"`; and without it.
- this loop: `trainables.loop.train_fn_per_worker` as a one-worker sweep trial runs it
  (`trainables.in_process.run_in_process`: in the process, no Train worker), grouped by length
  (its default) and not.

Timed: the optimizer steps after the first `--warmup` (thread pools, allocator and first-batch
costs), on both sides: HF by a `TrainerCallback`'s clock at every step's end, the loop by its own
step clock (its reports every `--warmup` steps, the first one's window left out). Evaluation and
checkpoints are outside both clocks. Peak memory: the side's process `ru_maxrss` (each side is
one process). `--reps` rounds alternate the four runs; medians are printed, then the last line
`ratio vs HF Trainer (best settings): <x>x samples/s, <y>x peak memory` (loop grouped against
HF grouped) and the ungrouped ratio. A ratio is the median of the rounds' own ratios (each
side against the other side's run of the same round): this machine's speed drifts by 10-30%
over minutes, and a round's runs are minutes apart at most, so pairing within a round keeps
the drift out of the ratio that a ratio of medians (taken from different rounds) lets in.

    .venv/bin/python bench/loop_throughput.py [--rows 1024] [--reps 3] [--threads 2]
        [--data ../shared/data/sst2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH_SIZE, MAX_LENGTH, SEED, LR = 32, 128, 0, 5e-5


def sample_sst2(data_dir: Path, rows: int, out: Path) -> tuple[str, str]:
    """Writes the first `rows` of a seeded shuffle of train.tsv, and 64 dev rows, as TSVs."""
    import numpy as np

    lines = (data_dir / "train.tsv").read_text().splitlines()
    header, body = lines[0], lines[1:]
    picked = np.random.default_rng(SEED).permutation(len(body))[:rows]
    train = out / "train.tsv"
    train.write_text("\n".join([header] + [body[i] for i in picked]) + "\n")
    dev = out / "dev.tsv"
    dev.write_text("\n".join((data_dir / "dev.tsv").read_text().splitlines()[:65]) + "\n")
    return str(train), str(dev)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads(n: int) -> dict[str, Any]:
    """Pins torch's intra-op threads (the environment variables are set by the parent)."""
    import torch

    torch.set_num_threads(n)
    return {
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
    }


def run_hf(train_tsv: str, group_by_length: bool, n_threads: int, warmup: int) -> dict[str, Any]:
    """The baseline: HF Trainer in this (fresh) process."""
    import pyarrow.csv as pa_csv
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trainables.models import resolve_model_path

    pinned = threads(n_threads)
    path = resolve_model_path("embedded:all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    table = pa_csv.read_csv(
        train_tsv, parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char=False)
    )
    encoded = tokenizer(
        table.column("sentence").to_pylist(), truncation=True, max_length=MAX_LENGTH
    )
    labels = table.column("label").to_pylist()
    rows = [
        {**{k: encoded[k][i] for k in encoded}, "labels": labels[i]} for i in range(len(labels))
    ]
    torch.manual_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH_SIZE,
        num_train_epochs=1,
        learning_rate=LR,
        weight_decay=0.01,
        seed=SEED,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        dataloader_num_workers=0,
        use_cpu=True,
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            if not ends:  # the first step's start
                ends.append(time.perf_counter())

        def on_step_end(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[StepClock()],
    )
    trainer.train()
    # ends[k] is step k's end (ends[0] the first step's start); every step holds BATCH_SIZE rows
    # but the epoch's last, which may be short.
    steps = len(ends) - 1
    timed_rows = len(rows) - warmup * BATCH_SIZE
    return {
        "samples_per_second": timed_rows / (ends[steps] - ends[warmup]),
        "peak_rss_mb": peak_rss_mb(),
        "steps": steps,
        **pinned,
    }


def loop_job(
    train_tsv: str, dev_tsv: str, group_by_length: bool, n_threads: int, eval_every: int
) -> dict[str, Any]:
    """The loop's job on the sampled rows, as a config mapping (what HF's side is set to)."""
    return {
        "data": {
            "train": train_tsv,
            "validation": dev_tsv,
            "text_column": "sentence",
            "max_length": MAX_LENGTH,
            "group_by_length": group_by_length,
        },
        "optimizer": {"lr": LR, "weight_decay": 0.01},
        "schedule": {"name": "linear"},
        "training": {
            "batch_size": BATCH_SIZE,
            "epochs": 1,
            "seed": SEED,
            "eval_every": eval_every,
            "checkpoints_to_keep": 1,
        },
        "scaling": {"num_workers": 1, "cpus_per_worker": n_threads},
    }


def run_loop(
    train_tsv: str, dev_tsv: str, group_by_length: bool, n_threads: int, warmup: int
) -> dict[str, Any]:
    """This project's loop in this (fresh) process, as a one-worker sweep trial runs it."""
    pinned = threads(n_threads)
    from trainables.config import parse_config
    from trainables.in_process import run_in_process

    cfg = parse_config(loop_job(train_tsv, dev_tsv, group_by_length, n_threads, warmup))
    reports: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as storage:
        run_in_process(
            cfg, run_name="loop", storage_path=storage, on_report=lambda m, _: reports.append(m)
        )
    timed = reports[1:]  # the first window holds the warm-up steps
    rows = sum(r["samples_per_second"] * r["step_seconds"] for r in timed)
    return {
        "samples_per_second": rows / sum(r["step_seconds"] for r in timed),
        "peak_rss_mb": peak_rss_mb(),
        "steps": int(reports[-1]["step"]),
        **pinned,
    }


MEASURES = ("samples_per_second", "peak_rss_mb")
RUNS = {  # name: (side, grouped)
    "HF Trainer, group_by_length (best)": ("hf", True),
    "trainables loop (default, grouped)": ("loop", True),
    "HF Trainer, no grouping": ("hf", False),
    "trainables loop, no grouping": ("loop", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=8, help="untimed first steps, each side")
    parser.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"),
    )
    parser.add_argument("--side", choices=["hf", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--dev", help=argparse.SUPPRESS)
    parser.add_argument("--group", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "hf":
        print(json.dumps(run_hf(args.train, args.group, args.threads, args.warmup)))
        return
    if args.side == "loop":
        print(json.dumps(run_loop(args.train, args.dev, args.group, args.threads, args.warmup)))
        return

    work = Path(tempfile.mkdtemp(prefix="loop-bench-"))
    train_tsv, dev_tsv = sample_sst2(Path(args.data), args.rows, work)
    print(
        f"SST-2 sample: {args.rows} rows, batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"seed {SEED}, 1 process x {args.threads} threads, CPU fp32, first {args.warmup} steps "
        f"untimed, {args.reps} alternating rounds",
        flush=True,
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    for rep in range(args.reps):
        for name, (side, group) in RUNS.items():
            command = [sys.executable, __file__, "--side", side, "--train", train_tsv]
            command += ["--dev", dev_tsv, "--threads", str(args.threads)]
            command += ["--warmup", str(args.warmup)] + (["--group"] if group else [])
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            results[name].append(run)
            print(
                f"round {rep + 1} {name:36s} {run['samples_per_second']:7.1f} samples/s "
                f"peak RSS {run['peak_rss_mb']:6.0f} MB ({run['steps']} steps, torch threads "
                f"{run['torch_threads']}, OMP {run['OMP_NUM_THREADS']}, "
                f"MKL {run['MKL_NUM_THREADS']})",
                flush=True,
            )

    median = {
        name: {
            k: statistics.median(r[k] for r in runs) for k in ("samples_per_second", "peak_rss_mb")
        }
        for name, runs in results.items()
    }
    best = median["HF Trainer, group_by_length (best)"]
    print(f"\nmedians of {args.reps} rounds, against HF Trainer's best settings:")
    for name, m in median.items():
        print(
            f"{name:36s} {m['samples_per_second']:7.1f} samples/s   peak RSS "
            f"{m['peak_rss_mb']:6.0f} MB   "
            f"{m['samples_per_second'] / best['samples_per_second']:.2f}x"
        )

    def ratios(ours: str, theirs: str, measure: str) -> list[float]:
        """`ours / theirs` in `measure`, round by round (runs of the same round)."""
        pairs = zip(results[ours], results[theirs], strict=True)
        return [a[measure] / b[measure] for a, b in pairs]

    def paired(ours: str, theirs: str, measure: str) -> float:
        return statistics.median(ratios(ours, theirs, measure))

    loop, flat = "trainables loop (default, grouped)", "trainables loop, no grouping"
    best_name, hf_flat = "HF Trainer, group_by_length (best)", "HF Trainer, no grouping"
    per_round = ", ".join(f"{x:.2f}x" for x in ratios(loop, best_name, "samples_per_second"))
    print(f"loop / HF best samples/s per round: {per_round}")
    print(
        f"ungrouped ratio (loop / HF Trainer, both without grouping): "
        f"{paired(flat, hf_flat, 'samples_per_second'):.2f}x samples/s, "
        f"{paired(flat, hf_flat, 'peak_rss_mb'):.2f}x peak memory"
    )
    print(
        f"ratio vs HF Trainer (best settings): "
        f"{paired(loop, best_name, 'samples_per_second'):.2f}x samples/s, "
        f"{paired(loop, best_name, 'peak_rss_mb'):.2f}x peak memory"
    )


if __name__ == "__main__":
    main()
