"""`sweeps` command line: run, validate, status, best, report, promote, verify, schema.

sweeps run SPEC [--set KEY=VALUE]... [--smoke-test] [--restart]
sweeps validate SPEC [SPEC...] [--set KEY=VALUE]...
sweeps status SPEC [--json]
sweeps best SPEC
sweeps report SPEC [--out DIR]
sweeps promote SPEC [--to URI]
sweeps verify URI
sweeps schema

`sweeps COMMAND --help` shows a command's options and an example.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.results.queries import BestTrial
from sweeps.spec import load_spec_with_origins
from sweeps.spec.wandb_format import explain
from sweeps.store.storage import check_storage
from sweeps.store.trivial import compare, read_trivial
from trainables.errors import FinetuneError
from trainables.objective import Objective

if TYPE_CHECKING:
    from trainables.config import FinetuneConfig
    from trainables.preflight import JobSummary

# A smoke test: the real path with 2 trials of 2 optimizer steps each.
SMOKE_OVERRIDES = ["search.num_samples=2", "job.training.max_steps=2", "job.training.eval_every=1"]


def smoke_swaps(job: FinetuneConfig) -> list[str]:
    """What `--smoke-test` also overrides in a causal-LM job whose model is not a folder on
    this machine (a Hub id: no pretrained generative model ships with a package): the tiny
    Llama of `trainables.tiny_lm.smoke_model` (random weights, built here once), on CPU."""
    if job.task != "causal_lm" or Path(job.model.name_or_path).is_dir():
        return []
    from trainables.tiny_lm import smoke_model

    return [f"job.model.name_or_path={smoke_model()}", "job.scaling.gpus_per_worker=0"]


def _print_best(
    best: BestTrial | None, objective: Objective, trivial: dict[str, Any] | None = None
) -> None:
    metric = objective.metric
    if best is None:
        print("no trial reported a finite " + metric)
        return
    print(f"best trial {best.trial_id}: {metric} = {best.metrics.get(metric)}")
    print("  config:  " + json.dumps(best.params, sort_keys=True))
    print("  metrics: " + json.dumps(best.metrics, sort_keys=True))
    print(f"  checkpoint: {best.checkpoint}")
    if trivial is not None:
        figures = {**trivial.get("validation", {}), **trivial.get("test", {})}
        print(f"  trivial predictor: {trivial.get('predictor')}: " + json.dumps(figures))
    versus = compare(trivial, objective, best.metrics.get(metric))
    if versus is not None:
        print(f"  {versus.message()}")


def _show_library_messages() -> None:
    """What the library logs while a sweep runs (W&B mode, promotions, warnings), as lines."""
    package = logging.getLogger("sweeps")
    package.setLevel(logging.INFO)
    if not any(isinstance(h, _ToStdout) for h in package.handlers):
        handler = _ToStdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)


class _ToStdout(logging.Handler):
    """Writes to whatever `sys.stdout` is when a line comes: a caller (a notebook, a test) may
    have replaced it since, and closed the one before."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stdout, flush=True)
        except Exception:
            self.handleError(record)


#: Every subcommand: its one-line help and an example (shown by `sweeps <cmd> --help`).
COMMANDS = {
    "run": (
        "run a sweep, or resume it where it stopped",
        "sweeps run sweeps/examples/laptop.yaml --set search.num_samples=4",
    ),
    "validate": (
        "check the spec, its data and its model; starts nothing",
        "sweeps validate sweeps/examples/laptop.yaml",
    ),
    "status": (
        "a table of the trials: status, best metric, parameters",
        "sweeps status sweeps/examples/laptop.yaml --json",
    ),
    "best": (
        "the best trial's config, metrics and checkpoint",
        "sweeps best sweeps/examples/laptop.yaml",
    ),
    "report": (
        "write report.html: learning curves, importance, top trials",
        "sweeps report sweeps/examples/laptop.yaml --out ./laptop-report",
    ),
    "promote": (
        "copy the best checkpoint to a versioned model folder",
        "sweeps promote sweeps/examples/laptop.yaml --to ./results/models",
    ),
    "verify": (
        "re-check a promoted model's checksums and load it",
        "sweeps verify ./results/models/laptop",
    ),
    "schema": (
        "print the JSON Schema of a sweep file (editor completion)",
        "sweeps schema > sweep.schema.json",
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweeps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = {
        name: sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for name, (text, example) in COMMANDS.items()
    }
    commands["verify"].add_argument(
        "uri", help="DEST/<sweep>/<version>, or DEST/<sweep> for latest"
    )
    commands["validate"].add_argument(
        "specs", nargs="+", metavar="SPEC", help="sweep YAMLs, each validated on its own"
    )
    for name in ("run", "validate", "status", "best", "report", "promote"):
        cmd = commands[name]
        if name != "validate":
            cmd.add_argument("spec", help="sweep YAML (see sweeps/examples/)")
        cmd.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="dotted override, e.g. search.num_samples=20",
        )
    commands["status"].add_argument(
        "--json", action="store_true", help="one JSON document for scripts instead of the table"
    )
    commands["promote"].add_argument(
        "--to", help="destination root (default: the spec's promote.to)"
    )
    commands["report"].add_argument(
        "--out", help="folder for report.html (default: beside the sweep)"
    )
    commands["run"].add_argument(
        "--smoke-test",
        action="store_true",
        help="2 trials of 2 steps each through the real path (a causal LM that is not a "
        "local folder: a tiny random Llama in its place, on CPU)",
    )
    commands["run"].add_argument(
        "--restart",
        action="store_true",
        help="discard an existing sweep of this name instead of resuming",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sweeps` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "verify":
        return _verify(args.uri)
    if args.command == "schema":
        from sweeps.spec.schema import schema_text

        sys.stdout.write(schema_text())
        return 0
    overrides = list(args.overrides)
    if getattr(args, "smoke_test", False):
        overrides += SMOKE_OVERRIDES
    _show_library_messages()
    if args.command == "validate":
        one_line = len(args.specs) > 1
        statuses = [_validate(path, overrides, one_line) for path in args.specs]
        return max(statuses)
    origins: dict[str, str] = {}
    try:
        spec, origins = load_spec_with_origins(args.spec, overrides)
        swaps = smoke_swaps(spec.job) if getattr(args, "smoke_test", False) else []
        if swaps:
            print(
                f"smoke test: model {spec.job.model.name_or_path!r} replaced by a tiny random "
                f"Llama on CPU ({swaps[0].partition('=')[2]})"
            )
            spec, origins = load_spec_with_origins(args.spec, overrides + swaps)
        from sweeps.results.queries import SweepResults

        results = SweepResults.of(spec)
        metric = spec.search.metric
        if args.command == "run":
            from sweeps.running.runner import run_sweep

            outcome = run_sweep(spec, restart=args.restart, progress=sys.stdout)
            if outcome.wandb_offline_runs:
                print(f"W&B runs are offline; upload them: wandb sync {outcome.wandb_offline_runs}")
            _print_best(outcome.best, spec.objective, read_trivial(results.folder))
            if not outcome.finished:
                ended = sum(t.ended for t in outcome.trials)
                print(
                    f"stopped before the end ({ended} of {outcome.planned_trials} trials "
                    "finished); run the same command again to resume"
                )
        elif args.command == "status":
            from sweeps.results.status import status_document, status_table

            table = results.table()
            if args.json:
                print(json.dumps(status_document(spec, results.uri, table), allow_nan=False))
            elif not table:
                print(f"no results for sweep {spec.name!r} yet ({results.uri})")
            else:
                print(status_table(table, spec.objective))
        elif args.command == "report":
            from sweeps.results.report import write_report

            rows = results.rows()
            if not rows:
                print(f"error: no results for sweep {spec.name!r} yet", file=sys.stderr)
                return 2
            local = Path(results.folder.path) if results.folder.is_local else Path(spec.name)
            out = Path(args.out) if args.out else local / "report"
            from sweeps.results.confirmation import confirmation_summary

            confirmed = confirmation_summary(spec)
            trivial = read_trivial(results.folder)
            page = write_report(
                spec.name, spec.search, spec.scheduler, rows, out, confirmed, trivial
            )
            print(f"report: {page}")
        elif args.command == "promote":
            from sweeps.running.promotion import promote_best

            done = promote_best(spec, to=args.to)
            if done is None:
                print(f"error: no checkpoint with a finite {metric}", file=sys.stderr)
                return 1
            state = "promoted" if done.created else "already promoted"
            print(f"{state}: trial {done.manifest['trial_id']} at {done.location}")
        else:
            from sweeps.results.confirmation import confirmed_best

            _print_best(confirmed_best(spec), spec.objective, read_trivial(results.folder))
    except FinetuneError as exc:
        # `origins` is set once the spec loaded: a later error (preflight's) naming a job field
        # also names the W&B key it came from. The spec's own errors already do.
        print(f"error: {explain(str(exc), origins)}", file=sys.stderr)
        return 2
    return 0


def _validate(path: str, overrides: list[str], one_line: bool) -> int:
    """Validates one spec file and prints its result line; returns its exit status (0 or 2).

    With `one_line` (several files on the command line) an error is one line on stderr that
    starts with the file, `<file>: error: <message>`, so each file has exactly one result line.
    Exceptions other than `FinetuneError` propagate: they are bugs, not bad specs.
    """
    try:
        spec, origins = load_spec_with_origins(path, overrides)
        check_storage(spec.storage_path, spec.promote.to if spec.promote else None)
        try:
            summary = _check_job(spec.job)
        except FinetuneError as exc:
            # Preflight names job fields (`model.name_or_path`); a W&B file's author wrote
            # their W&B names (`model_name_or_path`).
            raise type(exc)(explain(str(exc), origins)) from None
    except FinetuneError as exc:
        if not one_line:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # Messages usually start with the file already, and list one problem per line.
        text = str(exc).removeprefix(f"{path}: ")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        print(f"{path}: error: {'; '.join(lines)}", file=sys.stderr)
        return 2
    print(
        f"{path}: valid; labels {list(summary.label_names)}, "
        f"rows {summary.split_sizes}, method {spec.search.method}, "
        f"scheduler {spec.scheduler.name}"
    )
    return 0


#: `check_inputs` results by the job's repr: specs that differ only outside the job (search,
#: scheduler) or that repeat a job share one check, which reads the data and loads the model.
_CHECKED_JOBS: dict[str, JobSummary] = {}


def _check_job(job: FinetuneConfig) -> JobSummary:
    # repr, not the JSON dump: JSON writes NaN as null; repr shows every field exactly. Keyed
    # in this process only, so a data file edited between two runs is read again.
    key = repr(job)
    if key not in _CHECKED_JOBS:
        # Imported here: it loads torch and transformers, which invalid specs never need.
        from trainables.preflight import check_inputs

        _CHECKED_JOBS[key] = check_inputs(job)
    return _CHECKED_JOBS[key]


def _verify(uri: str) -> int:
    from sweeps.store.model_versions import verify

    answers: list[str] = []

    def keep(given: Any, answer: str) -> None:
        shown = given if isinstance(given, str) else "a grey test image"
        answers.append(f"  {shown!r} -> {answer}")

    try:
        manifest = verify(uri, on_answer=keep)
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    name = f"{manifest['sweep']} {manifest['version']} (trial {manifest['trial_id']})"
    print(f"ok: {name}, {len(manifest['files'])} files match the manifest; the model loads")
    print("\n".join(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
