"""The speed levers for the text loop, each measured on the loop's own step: what each pays here.

One step as `trainables.loop.run_loop` takes it (the task's batch of length-grouped
rows, the task's model and logits, cross-entropy, backward, clipping at 1.0, the loop's fused
AdamW, `zero_grad(set_to_none=True)`) on the embedded MiniLM, the same 1,024 SST-2 rows, batch
32 and max length 128 as `bench/loop_throughput.py`, CPU fp32, 2 threads pinned. Variants, each
in a fresh process, alternating over `--reps` rounds (medians printed):

- `as shipped`: what the loop runs (transformers' default attention, SDPA).
- `eager attention`: `attn_implementation="eager"`; the difference is what SDPA pays.
- `torch.compile`: the model compiled by inductor with dynamic shapes (every batch has its own
  length); its compile seconds (the first steps) are printed apart from its samples/s.
- `dropout by rand`: every `nn.Dropout` draws its mask as `rand >= p` (the same Bernoulli keep
  probability and scaling) instead of `bernoulli_`: PyTorch's CPU `bernoulli_` uses MKL's
  generator only on Intel CPUs and a serial double-precision draw elsewhere.
- `gc frozen`: `gc.freeze()` before the first step, so the cycle collector never scans the
  libraries' objects (every variant also prints the seconds the collector ran in its steps).
- `clip in fused step`: the gradient norm as before (`torch.nn.utils.get_total_norm`), but the
  clip's multiply folded into the fused AdamW step as its `grad_scale` (the step divides the
  gradients by it, as it does for AMP), which saves one pass over the gradients.

Also printed: each variant's step parts (batch preparation, forward, backward, clipping,
optimizer) and, from the `as shipped` rounds, what length grouping leaves of padding (the most
padding-free packing could remove) and the share of batch preparation (the most overlapping it
with compute could hide). The first `--warmup` steps are untimed.

    PYTHONPATH=$PWD .venv/bin/python bench/loop_levers.py [--reps 3] [--data ../shared/data/sst2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.loop_throughput import BATCH_SIZE, SEED, loop_job, sample_sst2

THREADS = 2
VARIANTS = (
    "as shipped",
    "eager attention",
    "torch.compile",
    "dropout by rand",
    "gc frozen",
    "clip in fused step",
)
PARTS = ("batch", "forward", "backward", "clip", "optimizer")


class RandDropout(torch.nn.Dropout):
    """`nn.Dropout` with its mask drawn by `torch.rand` (keep where rand >= p), scaled alike."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


def swap_dropout(model: torch.nn.Module) -> int:
    """Makes every `nn.Dropout` of `model` a `RandDropout` (same attributes); returns how many."""
    swapped = 0
    for module in model.modules():
        if type(module) is torch.nn.Dropout:
            module.__class__ = RandDropout
            swapped += 1
    return swapped


def run_variant(variant: str, train_tsv: str, dev_tsv: str, warmup: int) -> dict[str, Any]:
    """One variant's steps in this (fresh) process."""
    import numpy as np
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    from trainables.config import parse_config
    from trainables.data import epoch_batches
    from trainables.optim import build_optimizer
    from trainables.tasks import prepare_task

    # The job `bench/loop_throughput.py` times (its schedule and reports are not used here).
    cfg = parse_config(loop_job(train_tsv, dev_tsv, True, THREADS, warmup))
    task = prepare_task(cfg)
    lengths = task.lengths("train")
    assert lengths is not None
    batches = epoch_batches(lengths, BATCH_SIZE, 1, 0, SEED, 0, True)
    torch.manual_seed(SEED)
    model: Any = task.build_model(cfg.model)
    if variant == "eager attention":
        model.set_attn_implementation("eager")
    swapped = swap_dropout(model) if variant == "dropout by rand" else 0
    forward: Any = torch.compile(model, dynamic=True) if variant == "torch.compile" else model
    optimizer = build_optimizer(model, cfg.optimizer)
    model.train()
    gc_seconds = [0.0, 0.0]  # total, start of the current collection

    def gc_clock(phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            gc_seconds[1] = now
        else:
            gc_seconds[0] += now - gc_seconds[1]

    gc.callbacks.append(gc_clock)
    if variant == "gc frozen":
        gc.freeze()
    params = [p for p in model.parameters() if p.requires_grad]
    parts = np.zeros((len(batches), len(PARTS)))
    for i, rows in enumerate(batches):
        t0 = time.perf_counter()
        batch = task.batch("train", rows, train=True, key=(SEED, 0, i, 0))
        labels = batch.pop("labels")
        t1 = time.perf_counter()
        loss = F.cross_entropy(task.logits(forward, batch).float(), labels)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if variant == "clip in fused step":
            grads = [p.grad for p in params if p.grad is not None]
            total = torch.nn.utils.get_total_norm(grads, 2.0)
            optimizer.grad_scale = (total + 1e-6).clamp(min=1.0)  # type: ignore[attr-defined]
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        t4 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        parts[i] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
    timed = parts[warmup:]
    rows_timed = sum(len(rows) for rows in batches[warmup:])
    real = int(sum(lengths[rows].sum() for rows in batches))
    padded = int(sum(len(rows) * lengths[rows].max() for rows in batches))
    return {
        "samples_per_second": rows_timed / timed.sum(),
        "warmup_seconds": float(parts[:warmup].sum()),
        "parts_ms": dict(zip(PARTS, (timed.mean(axis=0) * 1000).tolist(), strict=True)),
        "padding": padded / real - 1,
        "attention": model.config._attn_implementation,
        "dropouts_swapped": swapped,
        "threads": torch.get_num_threads(),
        "final_loss": float(loss),
        "gc_seconds": gc_seconds[0],
    }


def variant_subprocess(variant: str, train: str, dev: str, warmup: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.loop_levers", "--variant", variant),
            *("--train", train, "--dev", dev, "--warmup", str(warmup)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/sst2"))
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--dev", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.train, args.dev, args.warmup)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        train, dev = sample_sst2(args.data, args.rows, Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
        for rep in range(args.reps):
            for variant in args.variants:
                r = variant_subprocess(variant, train, dev, args.warmup)
                runs[variant].append(r)
                print(
                    f"[{rep + 1}] {variant:16s} {r['samples_per_second']:6.1f} samples/s  "
                    f"first {args.warmup} steps {r['warmup_seconds']:5.1f} s  attention "
                    f"{r['attention']}, {r['threads']} threads, final loss {r['final_loss']:.4f}, "
                    f"cycle collector {r['gc_seconds']:.2f} s",
                    flush=True,
                )
    base = statistics.median(r["samples_per_second"] for r in runs[VARIANTS[0]])
    print(f"median of {args.reps} rounds, against `{VARIANTS[0]}` ({base:.1f} samples/s):")
    for variant, rs in runs.items():
        rate = statistics.median(r["samples_per_second"] for r in rs)
        warm = statistics.median(r["warmup_seconds"] for r in rs)
        print(
            f"  {variant:16s} {rate:6.1f} samples/s  {rate / base:5.2f}x   first "
            f"{args.warmup} steps {warm:5.1f} s"
        )
    medians = {
        variant: {p: statistics.median(r["parts_ms"][p] for r in rs) for p in PARTS}
        for variant, rs in runs.items()
    }
    for variant, parts in medians.items():
        step = sum(parts.values())
        print(
            f"{variant}, one step: "
            + ", ".join(f"{p} {ms:.1f} ms ({ms / step:.0%})" for p, ms in parts.items())
        )
    shipped, parts = runs[VARIANTS[0]], medians[VARIANTS[0]]
    step = sum(parts.values())
    print(
        f"padding left by length grouping: {shipped[0]['padding']:.1%} of real tokens (the most "
        f"padding-free packing could remove); batch preparation {parts['batch'] / step:.1%} of a "
        "step (the most overlapping it with compute could hide)"
    )


if __name__ == "__main__":
    main()
