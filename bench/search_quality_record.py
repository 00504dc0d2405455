"""Records the learning curves `bench/search_quality.py` replays: real fine-tuning runs of the
embedded MiniLM on an SST-2 subset over a fixed design of 48 configurations x 3 seeds.

Every evaluation's step, validation and test accuracy and seconds land in
`bench/data/search_quality_curves.parquet`, one row per evaluation. The file is rewritten
after every run and runs already in it are skipped, so an interrupted recording continues where
it stopped. Runs go seed-major (all 48 configurations at seed 0 first), so a partial table is a
whole design at fewer seeds.

Regenerate (about 2 hours on 2 cores; resumable):

    nice -n 19 env PYTHONPATH=$PWD .venv/bin/python bench/search_quality_record.py \
        > /tmp/search_quality_record.log 2>&1 &

The runs use the project's own building blocks in this process (the per-worker loop needs a
Ray Train session, so this file walks the same steps without one): `build_dataset` (validation
carved from the train subset, the SST-2 dev file as the test split), `tokenize_split`,
`epoch_batches`/`collate`, `build_model` (freeze), `build_optimizer`, `lr_schedule`,
`plan_job`, and `trainables.metrics.evaluate`. One process, torch pinned to 2 threads.

The clock: `seconds` of an evaluation is the training time since the previous one plus the
validation pass, what a trial would spend; the test pass (`test_seconds`) is recorded apart,
because a sweep evaluates the test split only at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from trainables.config import FinetuneConfig, parse_config
from trainables.data import build_dataset, collate, epoch_batches, read_table, tokenize_split
from trainables.loop import eval_iter
from trainables.metrics import evaluate
from trainables.models import build_model, load_tokenizer
from trainables.optim import build_optimizer, lr_schedule
from trainables.plan import plan_job

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "data" / "search_quality_curves.parquet"
SST2 = ROOT.parent.parent / "shared" / "data" / "sst2"
if not SST2.is_dir():  # a worktree under /work/wt/<name>: the shared folder is /work/shared
    SST2 = Path("/work/shared/data/sst2")

#: Rows of SST-2 train drawn (seeded) for this bench; 20% of them are carved off as validation.
SUBSET_ROWS = 1500
SUBSET_SEED = 0
EPOCHS = 2
#: Evaluations per epoch: 6 per run, at the same fractions of the data for both batch sizes.
EVALS_PER_EPOCH = 3
MAX_LENGTH = 64
SEEDS = (0, 1, 2)

#: Learning rates: 6 levels, log-spaced over 1e-6..1e-3.
LRS = tuple(float(f"{10 ** (-6 + 0.6 * i):.3g}") for i in range(6))


#: The table's column of each dotted job key of the design.
COLUMNS = {
    "lr": "optimizer.lr",
    "batch_size": "training.batch_size",
    "optimizer": "optimizer.name",
    "freeze": "model.freeze",
    "weight_decay": "optimizer.weight_decay",
    "warmup_ratio": "schedule.warmup_ratio",
}


def design() -> list[dict[str, Any]]:
    """The 48 configurations (dotted job keys, as a sweep's space names them).

    Full factorial over learning rate (6 levels) x batch size {16, 32} x optimizer {adamw,
    sgd} x freeze {none, backbone}; weight decay {0, 0.1} and warmup ratio {0, 0.1} are
    aliased to interactions of the others (a 2^(5-2) fraction), so each takes both values in
    every learning-rate level. The HF Trainer defaults (adamw, no decay, no warmup, no freeze)
    are in it at batch 16.
    """
    configs = []
    for lr, batch, opt, freeze in itertools.product(
        LRS, (16, 32), ("adamw", "sgd"), ("none", "backbone")
    ):
        big, sgd, frozen = batch == 32, opt == "sgd", freeze == "backbone"
        configs.append(
            {
                "optimizer.lr": lr,
                "training.batch_size": batch,
                "optimizer.name": opt,
                "model.freeze": freeze,
                "optimizer.weight_decay": 0.1 if big != sgd else 0.0,
                "schedule.warmup_ratio": 0.1 if sgd != frozen else 0.0,
            }
        )
    return configs


def job_of(params: dict[str, Any], seed: int) -> FinetuneConfig:
    """The validated fine-tuning job of one configuration and seed."""
    batch = params["training.batch_size"]
    steps_per_epoch = math.ceil(SUBSET_ROWS * 0.8 / batch)
    return parse_config(
        {
            "data": {
                "train": str(SST2 / "train.tsv"),
                "test": str(SST2 / "dev.tsv"),
                "text_column": "sentence",
                "validation_fraction": 0.2,
                "max_length": MAX_LENGTH,
            },
            "model": {"freeze": params["model.freeze"]},
            "optimizer": {
                "name": params["optimizer.name"],
                "lr": params["optimizer.lr"],
                "weight_decay": params["optimizer.weight_decay"],
            },
            "schedule": {"name": "linear", "warmup_ratio": params["schedule.warmup_ratio"]},
            "training": {
                "batch_size": batch,
                "epochs": EPOCHS,
                "eval_every": math.ceil(steps_per_epoch / EVALS_PER_EPOCH),
                "seed": seed,
                "precision": "fp32",
            },
        },
        source="search_quality_record",
    )


def load_tables() -> dict[str, pa.Table]:
    """The seeded train subset and the whole dev file (the test split)."""
    train = read_table(str(SST2 / "train.tsv"))
    rows = np.random.default_rng(SUBSET_SEED).choice(train.num_rows, SUBSET_ROWS, replace=False)
    return {"train": train.take(np.sort(rows)), "test": read_table(str(SST2 / "dev.tsv"))}


def record_run(job: FinetuneConfig, tables: dict[str, pa.Table]) -> list[dict[str, Any]]:
    """Trains one job in this process; one dict per evaluation."""
    t = job.training
    tokenizer = load_tokenizer(job.model.name_or_path)
    dataset = build_dataset(job.data, tables)
    splits = {
        name: tokenize_split(split, tokenizer, job.data.max_length)
        for name, split in dataset.splits.items()
    }
    train, pad_id, labels_n = splits["train"], tokenizer.pad_token_id or 0, len(dataset.label_names)
    plan = plan_job(job, len(train), 1)
    lr_at = lr_schedule(job.optimizer.lr, job.schedule, plan.total_steps)
    torch.manual_seed(t.seed)
    model = build_model(job.model, dataset.label_names)
    optimizer = build_optimizer(model, job.optimizer)
    torch.manual_seed(t.seed * 1000 + 1)
    device = torch.device("cpu")

    def metrics_of(split: str, prefix: str) -> dict[str, float]:
        batches = eval_iter(splits[split], t.batch_size, pad_id, 0, 1)
        return evaluate(model, batches, labels_n, device, contextlib.nullcontext, prefix)

    rows: list[dict[str, Any]] = []
    step, seconds, elapsed = 0, 0.0, 0.0
    model.train()
    for epoch in range(t.epochs):
        for batch_rows in epoch_batches(train.lengths, t.batch_size, 1, 0, t.seed, epoch, True):
            tick = time.perf_counter()
            batch = collate(train, batch_rows, pad_id)
            labels = batch.pop("labels")
            loss = F.cross_entropy(model(**batch).logits, labels)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, 1.0)
            if job.optimizer.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), job.optimizer.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seconds += time.perf_counter() - tick
            if not plan.evaluates_at(step):
                continue
            tick = time.perf_counter()
            val = metrics_of("validation", "val_")
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            test = metrics_of("test", "test_")
            elapsed += seconds
            rows.append(
                {
                    "evaluation": len(rows) + 1,
                    "step": step,
                    "epoch": step / plan.steps_per_epoch,
                    "val_accuracy": val["val_accuracy"],
                    "val_loss": val["val_loss"],
                    "test_accuracy": test["test_accuracy"],
                    "seconds": seconds,
                    "elapsed": elapsed,
                    "test_seconds": time.perf_counter() - tick,
                }
            )
            seconds = 0.0
    return rows


def warm_up(tables: dict[str, pa.Table]) -> None:
    """One short unrecorded run of each optimizer: a process's first training steps are several
    times slower (kernel and allocator set-up), which would otherwise land on the first run."""
    for opt in ("adamw", "sgd"):
        params = design()[0] | {"optimizer.name": opt}
        small = {"train": tables["train"].slice(0, 200), "test": tables["test"].slice(0, 50)}
        record_run(job_of(params, 0), small)


def append_run(path: Path, rows: list[dict[str, Any]]) -> None:
    """Adds one run's rows to the table, rewriting it atomically (a kill loses one run)."""
    new = pa.Table.from_pylist(rows)
    table = pa.concat_tables([pq.read_table(path), new]) if path.exists() else new
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def done_runs(path: Path) -> set[tuple[int, int]]:
    """(config_id, seed) of the runs already recorded."""
    if not path.exists():
        return set()
    table = pq.read_table(path, columns=["config_id", "seed"]).to_pydict()
    return set(zip(table["config_id"], table["seed"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--limit", type=int, default=None, help="record at most N runs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tables, configs, done = load_tables(), design(), done_runs(args.out)
    todo = [(c, s) for s in SEEDS for c in range(len(configs)) if (c, s) not in done]
    print(f"{len(done)} runs recorded, {len(todo)} to go, torch threads {args.threads}", flush=True)
    if todo:
        warm_up(tables)
    for config_id, seed in todo[: args.limit]:
        params = configs[config_id]
        started = time.perf_counter()
        curve = record_run(job_of(params, seed), tables)
        keys = {"config_id": config_id, "seed": seed} | {
            column: params[key] for column, key in COLUMNS.items()
        }
        append_run(args.out, [keys | row for row in curve])
        print(
            f"config {config_id:2d} seed {seed}: val {curve[-1]['val_accuracy']:.4f} "
            f"test {curve[-1]['test_accuracy']:.4f} clock {curve[-1]['elapsed']:.1f} s "
            f"wall {time.perf_counter() - started:.1f} s  {params}",
            flush=True,
        )


if __name__ == "__main__":
    main()
