"""Data prepared once per sweep against once per trial and rank, on a million rows.

SST-2's train split repeated to `--rows` rows (1,000,000 by default) as a TSV, the embedded
MiniLM tokenizer, max_length 64. Each measurement runs in a fresh process and prints its
seconds (the libraries and the tokenizer loaded before the clock starts) and peak RSS:

- before (what every rank of every trial did): `prepare_task(job)`, i.e. read the file and
  tokenize every split, then batch this rank's share of one epoch (2 ranks, rank 0);
- the sweep's one preparation (`trainables.prepared.prepare_tokens`, on the driver);
- after (each rank of each trial): `prepare_task(job, prepared_data=...)` with the prepared tokens
  (memory-mapped), then the same batching.

    .venv/bin/python bench/data_prep.py [--rows 1000000] [--data ../shared/data/sst2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The workplace's shared copy (`../shared/data`): benchmarks only, never the product.
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"

MAX_LENGTH, BATCH_SIZE, WORLD = 64, 32, 2


def write_rows(data_dir: Path, rows: int, out: Path) -> str:
    """train.tsv's rows repeated to `rows` rows."""
    lines = (data_dir / "train.tsv").read_text().splitlines()
    header, body = lines[0], lines[1:]
    path = out / "train.tsv"
    with path.open("w") as handle:
        handle.write(header + "\n")
        for i in range(rows):
            handle.write(body[i % len(body)] + "\n")
    return str(path)


def job(train: str) -> Any:
    from trainables.config import parse_config

    return parse_config(
        {
            "data": {
                "train": train,
                "text_column": "sentence",
                "max_length": MAX_LENGTH,
                "validation_fraction": 0.01,
            },
            "training": {"batch_size": BATCH_SIZE},
        }
    )


def rank_prepares(train: str, prepared: str | None) -> dict[str, float]:
    """A rank's data preparation, then one epoch of its batches."""
    from trainables.data import epoch_batches
    from trainables.models import load_tokenizer
    from trainables.tasks import prepare_task

    # Outside the clock on both sides: the libraries and the tokenizer, which a rank loads
    # for its model either way.
    load_tokenizer("embedded:all-MiniLM-L6-v2")
    start = time.perf_counter()
    task = prepare_task(job(train), prepared_data=prepared)
    prepare_s = time.perf_counter() - start
    lengths = task.lengths("train")
    assert lengths is not None
    start = time.perf_counter()
    for rows in epoch_batches(lengths, BATCH_SIZE, WORLD, 0, 0, 0, True):
        task.batch("train", rows, train=True)
    return {
        "prepare_s": prepare_s,
        "batch_epoch_s": time.perf_counter() - start,
        "rows": task.splits["train"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def sweep_prepares(train: str, folder: str) -> dict[str, Any]:
    from trainables.models import load_tokenizer
    from trainables.prepared import prepare_tokens

    load_tokenizer("embedded:all-MiniLM-L6-v2")
    start = time.perf_counter()
    location = prepare_tokens(job(train), folder)
    return {
        "prepare_s": time.perf_counter() - start,
        "location": location,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", default=str(SST2))
    parser.add_argument("--side", choices=["rank", "sweep"], help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "rank":
        print(json.dumps(rank_prepares(args.train, args.prepared)))
        return
    if args.side == "sweep":
        print(json.dumps(sweep_prepares(args.train, args.prepared)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        train = write_rows(Path(args.data), args.rows, Path(tmp))
        print(f"SST-2 train repeated to {args.rows:,} rows, max_length {MAX_LENGTH}", flush=True)
        before = run("--side", "rank", "--train", train)
        once = run("--side", "sweep", "--train", train, "--prepared", f"{tmp}/prepared")
        after = run("--side", "rank", "--train", train, "--prepared", once["location"])
    print(f"{'':44s} {'prepare':>9s} {'batch epoch':>12s} {'peak RSS':>9s}")
    print(
        f"{'before: per trial and rank (read + tokenize)':44s} {before['prepare_s']:8.1f}s "
        f"{before['batch_epoch_s']:11.1f}s {before['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"{'after: once per sweep (driver)':44s} {once['prepare_s']:8.1f}s {'':12s} "
        f"{once['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"{'after: per trial and rank (memory-mapped)':44s} {after['prepare_s']:8.1f}s "
        f"{after['batch_epoch_s']:11.1f}s {after['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"per trial and rank: data preparation {after['prepare_s']:.2f}s vs "
        f"{before['prepare_s']:.1f}s ({before['prepare_s'] / after['prepare_s']:.0f}x less), "
        f"peak RSS {after['peak_rss_mb']:.0f} vs {before['peak_rss_mb']:.0f} MB "
        f"({after['peak_rss_mb'] / before['peak_rss_mb']:.2f}x)"
    )


if __name__ == "__main__":
    main()
