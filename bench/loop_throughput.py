"""This loop against HF `Trainer` at its best settings, like for like: real (non-pad) tokens/s
and peak memory on identical data.

Both sides fine-tune the embedded MiniLM on the same SST-2 sample (same rows, batch size, max
length, seed, optimizer and LR), one epoch, CPU fp32, each run in a fresh process of its own
with its threads pinned (`OMP_NUM_THREADS`, `MKL_NUM_THREADS` and `torch.set_num_threads`, each
side prints what it ran with):

- baseline: `transformers.Trainer` with `DataCollatorWithPadding` (its dynamic padding) at its
  best setting for the task, `train_sampling_strategy="group_by_length"`; and without it.
- this loop: `trainables.loop.run_loop` as a one-worker sweep trial runs it
  (`trainables.in_process.run_in_process`: in the process, no Train worker), grouped by length
  (its default) and not.

Grouped, both sides sort rows by length inside windows of the same size: HF's
`get_length_grouped_indices` rule (`min(rows // (4 * batch), 50)` batches, at least 1), which
`trainables.data.length_group_rows` follows (pinned by `tests/bench/test_loop_throughput.py`).
With different windows one side pads less and its samples/s says nothing about its step.

Timed: the optimizer steps after the first `--warmup` (thread pools, allocator and first-batch
costs), on both sides: HF by a `TrainerCallback`'s clock at every step's end, the loop by its own
step clock (its reports every `--warmup` steps, the first one's window left out). Evaluation and
checkpoints are outside both clocks. Each run also prints its CPU share (its process's CPU
seconds over threads x wall seconds, from its first timed batch to its end): well under 1, the
run shared its cores with something else and its figures are not its own. Work is counted
from the batches each side trained on in its timed steps (HF: what its collator returned, in

# The workplace's shared copy (`../shared/data`): benchmarks only, never the product.
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
order; the loop: what its task's `batch` returned for training, in order): real tokens (the
attention mask's ones), padded tokens (the batch's shape) and rows. Both sides must see the
same real tokens over the epoch, or the bench stops. Peak memory: the side's process
`ru_maxrss` (each side is one process).

`--reps` rounds alternate the runs; medians are printed, then the ungrouped ratio and the last
line `ratio vs HF Trainer (best settings): <x>x real tokens/s, <y>x peak memory` (loop grouped
against HF grouped). A ratio is the median of the rounds' own ratios (each side against the
other side's run of the same round): this machine's speed drifts by 10-30% over minutes, and a
round's runs are minutes apart at most, so pairing within a round keeps the drift out of the
ratio that a ratio of medians (taken from different rounds) lets in.

    .venv/bin/python bench/loop_throughput.py [--rows 1024] [--reps 3] [--threads 2]
        [--data ../shared/data/sst2] [--grouped-only]
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

BATCH_SIZE, MAX_LENGTH, SEED, LR = 32, 128, 0, 5e-5
ROWS = 1024  # the default sample


def token_counts(batch: Mapping[str, Any]) -> tuple[int, int]:
    """(real tokens, padded tokens) of one padded text batch: its attention mask's ones, and
    its shape (rows x the longest row's tokens)."""
    mask = batch["attention_mask"]
    return int(mask.sum()), int(mask.numel())


#: HF `TrainingArguments` that keep a Trainer to training alone, on the CPU, as the loop's side
#: is: no evaluation, saving, logging, progress bar or data-loader processes.
HF_TRAIN_ONLY: dict[str, Any] = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": [],
    "logging_strategy": "no",
    "dataloader_num_workers": 0,
    "use_cpu": True,
    "disable_tqdm": True,
}


class Tally:
    """The batches a side trained on, in order: rows, real tokens, padded tokens per batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []
        self.clocks: list[tuple[float, float]] = []  # (wall, process CPU) at each batch

    def add(self, batch: Mapping[str, Any]) -> None:
        real, padded = token_counts(batch)
        self.batches.append((len(batch["attention_mask"]), real, padded))
        self.clocks.append((time.perf_counter(), time.process_time()))

    def cpu_share(self, first: int, threads: int) -> float:
        """The process's CPU seconds from batch `first` on over `threads` x the wall seconds:
        near 1 when the process had its cores to itself, lower when something else ran."""
        wall, cpu = self.clocks[first]
        return (time.process_time() - cpu) / (time.perf_counter() - wall) / threads

    def result(
        self, first: int, seconds: float, steps: int, threads: int, **extra: Any
    ) -> dict[str, Any]:
        """The side's figures (`rates`) over the batches from `first` on, with its CPU share."""
        share = self.cpu_share(first, threads)
        return rates(self.work(first), seconds, steps, cpu_share=share, **extra)

    def work(self, first: int) -> dict[str, int]:
        """Rows, real and padded tokens of the batches from `first` on (the timed steps), and
        the epoch's real tokens."""
        timed = self.batches[first:]
        return {
            "rows": sum(b[0] for b in timed),
            "real_tokens": sum(b[1] for b in timed),
            "padded_tokens": sum(b[2] for b in timed),
            "epoch_real_tokens": sum(b[1] for b in self.batches),
            "epoch_padded_tokens": sum(b[2] for b in self.batches),
        }


def rates(work: dict[str, int], seconds: float, steps: int, **extra: Any) -> dict[str, Any]:
    """A side's result: its timed work per second, its padding share, its peak memory."""
    return {
        "real_tokens_per_second": work["real_tokens"] / seconds,
        "padded_tokens_per_second": work["padded_tokens"] / seconds,
        "padding": 1 - work["real_tokens"] / work["padded_tokens"],
        "samples_per_second": work["rows"] / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "steps": steps,
        "epoch_real_tokens": work["epoch_real_tokens"],
        "epoch_padded_tokens": work["epoch_padded_tokens"],
        **extra,
    }


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
        **HF_TRAIN_ONLY,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    ends: list[float] = []
    tally = Tally()

    class CountingCollator(DataCollatorWithPadding):
        """HF's dynamic padding, each batch it returns tallied (batches are collated in the
        order they are trained on, one per step here: no gradient accumulation)."""

        def __call__(self, features: list[dict[str, Any]]) -> Any:
            batch = super().__call__(features)
            tally.add(batch)
            return batch

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=CountingCollator(tokenizer),
        callbacks=[step_clock(ends)],
    )
    trainer.train()
    seconds, steps = hf_timing(ends, tally, warmup)
    return tally.result(warmup, seconds, steps, n_threads, **pinned)


def step_clock(ends: list[float]) -> Any:
    """A `TrainerCallback` appending to `ends` the first step's start, then every step's end."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            if not ends:  # the first step's start
                ends.append(time.perf_counter())

        def on_step_end(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

    return StepClock()


def hf_timing(ends: list[float], tally: Tally, warmup: int) -> tuple[float, int]:
    """(seconds of the steps after the first `warmup`, steps) of a Trainer run timed by
    `step_clock`, whose collator tallied one batch per step (no gradient accumulation)."""
    steps = len(ends) - 1  # ends[k] is step k's end (ends[0] the first step's start)
    if len(tally.batches) != steps:
        raise RuntimeError(f"the collator made {len(tally.batches)} batches for {steps} steps")
    return ends[steps] - ends[warmup], steps


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
        **one_epoch(eval_every, n_threads),
    }


def one_epoch(
    eval_every: int, n_threads: int, batch_size: int = BATCH_SIZE, lr: float = LR, seed: int = SEED
) -> dict[str, Any]:
    """The sections every bench's loop job shares: one epoch (linear decay, weight decay 0.01)
    on one worker of `n_threads` threads, keeping one checkpoint."""
    return {
        "optimizer": {"lr": lr, "weight_decay": 0.01},
        "schedule": {"name": "linear"},
        "training": {
            "batch_size": batch_size,
            "epochs": 1,
            "seed": seed,
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
    from trainables.tasks.text import TextTask

    tally = Tally()
    cfg = parse_config(loop_job(train_tsv, dev_tsv, group_by_length, n_threads, warmup))
    seconds, steps = run_loop_counted(
        cfg, TextTask, lambda _task, _split, _rows, batch: tally.add(batch), tally, warmup
    )
    return tally.result(warmup, seconds, steps, n_threads, **pinned)


#: Called with a task, the split, the rows and the batch the task built for them.
OnBatch = Callable[[Any, str, Sequence[int], dict[str, Any]], None]


def run_loop_counted(
    cfg: Any, task_class: Any, on_batch: OnBatch, tally: Tally, warmup: int
) -> tuple[float, int]:
    """Runs `cfg`'s loop in this process as a one-worker sweep trial runs it
    (`run_in_process`), with `on_batch` called on each training batch `task_class.batch`
    returns (one per step here); `cfg` reports every `warmup` steps. Returns the seconds of
    the steps after the first `warmup` (the loop's own step clock: its reports' step time,
    the first window left out) and the steps."""
    from trainables.in_process import run_in_process

    shipped = task_class.batch

    def counted(
        self: Any, split: str, rows: Sequence[int], train: bool, key: Sequence[int] = ()
    ) -> dict[str, Any]:
        """The loop's own batch, passed to `on_batch` when it is a training batch."""
        batch = shipped(self, split, rows, train, key)
        if train:
            on_batch(self, split, rows, batch)
        return batch

    task_class.batch = counted
    reports: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as storage:
            run_in_process(
                cfg, run_name="loop", storage_path=storage, on_report=lambda m, _: reports.append(m)
            )
    finally:
        task_class.batch = shipped
    steps = int(reports[-1]["step"])
    if len(tally.batches) != steps or int(reports[0]["step"]) != warmup:
        raise RuntimeError(
            f"the loop made {len(tally.batches)} batches for {steps} steps, its first report "
            f"at step {reports[0]['step']} (expected {warmup})"
        )
    return sum(r["step_seconds"] for r in reports[1:]), steps  # reports[0]: the warm-up


def run_side(command: list[str], env: Mapping[str, str], name: str) -> dict[str, Any]:
    """Runs one side in a fresh process; its last line of output is its result (JSON)."""
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def medians(
    results: Mapping[str, Sequence[Mapping[str, Any]]], measures: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Each run's median over the rounds, in each of `measures`."""
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in measures}
        for name, rs in results.items()
    }


def round_ratios(
    results: Mapping[str, Sequence[Mapping[str, Any]]], ours: str, theirs: str, measure: str
) -> list[float]:
    """`ours / theirs` in `measure`, round by round (runs of the same round)."""
    pairs = zip(results[ours], results[theirs], strict=True)
    return [a[measure] / b[measure] for a, b in pairs]


def paired_ratio(
    results: Mapping[str, Sequence[Mapping[str, Any]]], ours: str, theirs: str, measure: str
) -> float:
    """The median of the rounds' own ratios (see the module docstring)."""
    return statistics.median(round_ratios(results, ours, theirs, measure))


MEASURES = (
    "real_tokens_per_second",
    "padded_tokens_per_second",
    "padding",
    "samples_per_second",
    "peak_rss_mb",
    "epoch_padded_tokens",
)
HF_BEST, LOOP = "HF Trainer, group_by_length (best)", "trainables loop (default, grouped)"
HF_FLAT, LOOP_FLAT = "HF Trainer, no grouping", "trainables loop, no grouping"
RUNS = {  # name: (side, grouped)
    HF_BEST: ("hf", True),
    LOOP: ("loop", True),
    HF_FLAT: ("hf", False),
    LOOP_FLAT: ("loop", False),
}


def describe(run: dict[str, Any]) -> str:
    """One run's figures on one line."""
    return (
        f"{run['real_tokens_per_second']:7.0f} real tok/s {run['padded_tokens_per_second']:7.0f} "
        f"padded tok/s padding {run['padding']:5.1%} {run['samples_per_second']:6.1f} samples/s "
        f"peak RSS {run['peak_rss_mb']:5.0f} MB"
    )


def timing_arguments(parser: argparse.ArgumentParser, rows: int, warmup: int) -> None:
    """The options every throughput bench takes: rows, rounds, threads, untimed first steps."""
    parser.add_argument("--rows", type=int, default=rows)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed first steps, each side")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    timing_arguments(parser, ROWS, warmup=8)
    parser.add_argument(
        "--grouped-only", action="store_true", help="skip the two ungrouped runs of each round"
    )
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
    runs = {k: v for k, v in RUNS.items() if v[1] or not args.grouped_only}
    print(
        f"SST-2 sample: {args.rows} rows, batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"seed {SEED}, 1 process x {args.threads} threads, CPU fp32, first {args.warmup} steps "
        f"untimed, {args.reps} alternating rounds",
        flush=True,
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for rep in range(args.reps):
        for name, (side, group) in runs.items():
            command = [sys.executable, __file__, "--side", side, "--train", train_tsv]
            command += ["--dev", dev_tsv, "--threads", str(args.threads)]
            command += ["--warmup", str(args.warmup)] + (["--group"] if group else [])
            run = run_side(command, env, name)
            results[name].append(run)
            print(
                f"round {rep + 1} {name:36s} {describe(run)} CPU share {run['cpu_share']:.2f} "
                f"({run['steps']} steps, torch threads {run['torch_threads']}, "
                f"OMP {run['OMP_NUM_THREADS']}, MKL {run['MKL_NUM_THREADS']})",
                flush=True,
            )
            # Same rows, same tokenizer: both sides must have trained on the same real tokens.
            epoch_tokens = {r["epoch_real_tokens"] for rs in results.values() for r in rs}
            if len(epoch_tokens) > 1:
                sys.exit(f"the sides trained on different real tokens per epoch: {epoch_tokens}")

    median = medians(results, MEASURES)
    best = median[HF_BEST]["real_tokens_per_second"]
    print(
        f"\nmedians of {args.reps} rounds ({results[HF_BEST][0]['epoch_real_tokens']} real "
        f"tokens an epoch on every side), against HF Trainer's best settings:"
    )
    for name, m in median.items():
        print(
            f"{name:36s} {describe(m)}   {m['real_tokens_per_second'] / best:.2f}x real tok/s   "
            f"epoch {m['epoch_padded_tokens']:.0f} padded tokens"
        )

    def ratios(ours: str, theirs: str, measure: str) -> list[float]:
        return round_ratios(results, ours, theirs, measure)

    def paired(ours: str, theirs: str, measure: str) -> float:
        return paired_ratio(results, ours, theirs, measure)

    per_round = ", ".join(f"{x:.2f}x" for x in ratios(LOOP, HF_BEST, "real_tokens_per_second"))
    print(f"loop / HF best real tokens/s per round: {per_round}")
    print(
        f"loop / HF best samples/s: {paired(LOOP, HF_BEST, 'samples_per_second'):.2f}x, "
        f"padded tokens/s: {paired(LOOP, HF_BEST, 'padded_tokens_per_second'):.2f}x "
        f"(medians of the rounds' ratios)"
    )
    if not args.grouped_only:
        print(
            f"ungrouped ratio (loop / HF Trainer, both without grouping): "
            f"{paired(LOOP_FLAT, HF_FLAT, 'real_tokens_per_second'):.2f}x real tokens/s, "
            f"{paired(LOOP_FLAT, HF_FLAT, 'peak_rss_mb'):.2f}x peak memory"
        )
    print(
        f"ratio vs HF Trainer (best settings): "
        f"{paired(LOOP, HF_BEST, 'real_tokens_per_second'):.2f}x real tokens/s, "
        f"{paired(LOOP, HF_BEST, 'peak_rss_mb'):.2f}x peak memory"
    )


if __name__ == "__main__":
    main()
