"""Does the embedded demo task make hyperparameters matter?

Fine-tunes the embedded MiniLM on the demo task under a handful of sensible configs through the
real path (a 1-worker TorchTrainer running the per-worker loop) and prints the validation
accuracy of each and the spread (max - min). The demo task's promise is a spread of at least
10 points.

    .venv/bin/python bench/demo_spread.py [--storage DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import ray

from trainables.config import parse_config
from trainables.trainer import build_trainer

BASE: dict[str, Any] = {
    "data": {"builtin": "demo", "max_length": 64},
    "training": {"batch_size": 32, "epochs": 2, "seed": 0},
    "scaling": {"num_workers": 1, "cpus_per_worker": 2},
}
CONFIGS: dict[str, dict[str, Any]] = {
    "full fine-tune, lr 1e-4": {"optimizer": {"lr": 1e-4}},
    "full fine-tune, lr 3e-5": {"optimizer": {"lr": 3e-5}},
    "full fine-tune, lr 5e-6": {"optimizer": {"lr": 5e-6}},
    "feature extraction (frozen backbone), lr 1e-3": {
        "optimizer": {"lr": 1e-3},
        "model": {"freeze": "backbone"},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    storage = args.storage or tempfile.mkdtemp(prefix="demo-spread-")
    ray.init(num_cpus=2, log_to_driver=False)
    accuracies = {}
    for i, (label, overrides) in enumerate(CONFIGS.items()):
        raw = {**BASE, **overrides, "name": f"spread-{i}"}
        started = time.perf_counter()
        result = build_trainer(
            parse_config(raw), run_name=f"spread-{i}", storage_path=storage
        ).fit()
        accuracies[label] = result.metrics["val_accuracy"]
        print(
            f"{label:48s} val_accuracy {accuracies[label]:.4f}  "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    spread = max(accuracies.values()) - min(accuracies.values())
    print(f"spread (max - min): {100 * spread:.1f} points")


if __name__ == "__main__":
    main()
