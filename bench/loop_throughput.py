"""This loop against HF `Trainer`: training samples/s and peak RSS on identical data.

Both sides fine-tune the embedded MiniLM on the same SST-2 sample (same rows, batch size, max
length, seed, optimizer and LR), one worker with 2 threads, one epoch, no evaluation or saving
inside the timed part:

- baseline: `transformers.Trainer` with `DataCollatorWithPadding` (its standard dynamic
  padding), run in its own subprocess; time = its `train_runtime`.
- this loop: `trainables.loop.train_fn_per_worker` in a 1-worker `TorchTrainer` (2 CPUs);
  time = the loop's own training time (reported `samples_per_second`).

Peak RSS is each process's `ru_maxrss`. Prints both and the ratio (this loop / HF).

    .venv/bin/python bench/loop_throughput.py [--rows 1024] [--data ../shared/data/sst2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
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


def run_hf(train_tsv: str, group_by_length: bool) -> dict[str, float]:
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

    torch.set_num_threads(2)
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
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)
    )
    out = trainer.train()
    return {
        "samples_per_second": len(rows) / out.metrics["train_runtime"],
        "peak_rss_mb": peak_rss_mb(),
    }


def with_rss(train_fn: Callable[[dict[str, Any]], None], out_file: str) -> Callable:
    """The real loop, then this worker's peak RSS written to `out_file` (rank 0)."""

    def measured(config: dict[str, Any]) -> None:
        import ray.train

        train_fn(config)
        if ray.train.get_context().get_world_rank() == 0:
            Path(out_file).write_text(json.dumps({"peak_rss_mb": peak_rss_mb()}))

    return measured


def run_loop(train_tsv: str, dev_tsv: str, storage: str, group_by_length: bool) -> dict[str, float]:
    """This project's loop in a 1-worker TorchTrainer."""

    from trainables.config import parse_config
    from trainables.loop import train_fn_per_worker
    from trainables.trainer import build_trainer

    cfg = parse_config(
        {
            "data": {
                "train": train_tsv,
                "validation": dev_tsv,
                "text_column": "sentence",
                "max_length": MAX_LENGTH,
                "group_by_length": group_by_length,
            },
            "optimizer": {"lr": LR, "weight_decay": 0.01},
            "schedule": {"name": "linear"},
            "training": {"batch_size": BATCH_SIZE, "epochs": 1, "seed": SEED},
            "scaling": {"num_workers": 1, "cpus_per_worker": 2},
        }
    )
    name = f"loop-grouped-{group_by_length}"
    rss_file = os.path.join(storage, f"{name}-rss.json")
    trainer = build_trainer(
        cfg, run_name=name, storage_path=storage, train_fn=with_rss(train_fn_per_worker, rss_file)
    )
    result = trainer.fit()
    return {
        "samples_per_second": result.metrics["samples_per_second"],
        **json.loads(Path(rss_file).read_text()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"),
    )
    parser.add_argument("--side", choices=["both", "hf"], default="both", help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--group", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "hf":
        print(json.dumps(run_hf(args.train, args.group)))
        return

    work = Path(tempfile.mkdtemp(prefix="loop-bench-"))
    train_tsv, dev_tsv = sample_sst2(Path(args.data), args.rows, work)
    print(
        f"SST-2 sample: {args.rows} rows, batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"seed {SEED}, 1 worker x 2 threads, CPU fp32",
        flush=True,
    )

    def hf(group: bool) -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, __file__, "--side", "hf", "--train", train_tsv]
            + (["--group"] if group else []),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    import ray

    baseline = hf(group=False)
    rows = {"HF Trainer (baseline)": baseline, "HF Trainer, group_by_length": hf(group=True)}
    ray.init(num_cpus=2, log_to_driver=False)
    storage = str(work / "storage")
    ours = run_loop(train_tsv, dev_tsv, storage, group_by_length=True)
    rows["trainables loop (default)"] = ours
    rows["trainables loop, no grouping"] = run_loop(train_tsv, dev_tsv, storage, False)
    ray.shutdown()
    for name, side in rows.items():
        print(
            f"{name:30s} {side['samples_per_second']:8.1f} samples/s   "
            f"peak RSS {side['peak_rss_mb']:7.0f} MB   "
            f"{side['samples_per_second'] / baseline['samples_per_second']:.2f}x"
        )
    print(
        f"ratio (loop / HF Trainer): "
        f"{ours['samples_per_second'] / baseline['samples_per_second']:.2f}x samples/s, "
        f"{ours['peak_rss_mb'] / baseline['peak_rss_mb']:.2f}x peak RSS"
    )


if __name__ == "__main__":
    main()
