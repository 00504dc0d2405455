"""Runs one fine-tuning job, no search: `python -m trainables.finetune CONFIG.yaml`.

Validates the config and its inputs on the driver, then fits a `TorchTrainer` with the
configured number of DDP workers. Rerunning the same config (same name and storage) resumes
from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from trainables.config import load_config
from trainables.errors import FinetuneError
from trainables.objective import Objective
from trainables.preflight import check_inputs, check_resources, cluster_nodes
from trainables.trainer import build_trainer, resolve_storage


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m trainables.finetune", description=__doc__)
    parser.add_argument("config", help="fine-tuning YAML (see trainables/examples/)")
    parser.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="worker-group restarts, each resuming from the latest checkpoint",
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        summary = check_inputs(cfg)
        print(f"labels {list(summary.label_names)}; rows per split {summary.split_sizes}")
        import ray

        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        check_resources(cfg.scaling, cluster_nodes())
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trainer = build_trainer(
        cfg,
        run_name=cfg.name,
        storage_path=resolve_storage(cfg.storage_path),
        max_failures=args.max_failures,
    )
    result = trainer.fit()
    if result.error is not None:
        print(f"error: the job failed: {result.error}", file=sys.stderr)
        return 1
    print(json.dumps(result.metrics, indent=2, sort_keys=True))
    mode = Objective.of(cfg.training.monitor).mode
    best = result.get_best_checkpoint(cfg.training.monitor, mode)
    print(f"best checkpoint by {cfg.training.monitor}: {best.path if best else None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
