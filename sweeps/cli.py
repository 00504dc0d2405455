"""`sweeps` command line: run, validate, status, best.

sweeps run SPEC [--set KEY=VALUE]... [--smoke-test] [--restart]
sweeps validate SPEC [--set KEY=VALUE]...
sweeps status SPEC
sweeps best SPEC
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sweeps.spec import SweepSpec, load_spec
from trainables.errors import FinetuneError

# A smoke test: the real path with 2 trials of 2 optimizer steps each.
SMOKE_OVERRIDES = ["search.num_samples=2", "job.training.max_steps=2", "job.training.eval_every=1"]


def _print_best(best: Any, spec: SweepSpec) -> None:
    if best is None:
        print("no trial reported a finite " + spec.search.metric)
        return
    print(
        f"best trial {best.trial_id}: {spec.search.metric} = {best.metrics.get(spec.search.metric)}"
    )
    print("  config:  " + json.dumps(best.params, sort_keys=True))
    print("  metrics: " + json.dumps(best.metrics, sort_keys=True))
    print(f"  checkpoint: {best.checkpoint_path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sweeps` console script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="sweeps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "validate", "status", "best"):
        cmd = sub.add_parser(name)
        cmd.add_argument("spec", help="sweep YAML (see sweeps/examples/)")
        cmd.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="dotted override, e.g. search.num_samples=20",
        )
        if name == "run":
            cmd.add_argument(
                "--smoke-test",
                action="store_true",
                help="2 trials of 2 steps each through the real path",
            )
            cmd.add_argument(
                "--restart",
                action="store_true",
                help="discard an existing sweep of this name instead of resuming",
            )
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if getattr(args, "smoke_test", False):
        overrides += SMOKE_OVERRIDES
    try:
        spec = load_spec(args.spec, overrides)
        if args.command == "validate":
            from trainables.preflight import check_inputs

            summary = check_inputs(spec.base_job)
            print(
                f"{args.spec}: valid; labels {list(summary.label_names)}, "
                f"rows {summary.split_sizes}, method {spec.search.method}, "
                f"scheduler {spec.scheduler.name}"
            )
            return 0
        from sweeps import runner

        if args.command == "run":
            _print_best(runner.run_sweep(spec, restart=args.restart), spec)
        elif args.command == "status":
            for row in runner.trial_table(spec):
                print(json.dumps(row, sort_keys=True, default=str))
        else:
            _print_best(runner.best_trial(spec), spec)
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
