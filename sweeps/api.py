"""The Python API, for notebooks and scripts: run a sweep, or read one, into a `Sweep`.

    import sweeps

    sweep = sweeps.run("sweeps/examples/laptop.yaml", ["search.num_samples=4"])
    sweep.best.params              # the best trial's hyperparameters
    sweep.promoted                 # where its model was promoted (when the spec promotes)
    sweep.trials                   # every report of every trial (pandas, from results.parquet)

    sweeps.load("results/sweeps/laptop").table   # a finished or running sweep, one row a trial

Importing `sweeps` stays cheap: Ray, pyarrow and pandas are imported when a function runs.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

    from sweeps.results.queries import BestTrial, SweepResults
    from sweeps.spec import SweepSpec


@dataclass(frozen=True)
class Sweep:
    """A sweep as its results file tells it (what `sweeps.run` and `sweeps.load` return).

    Attributes:
        spec: The sweep's spec.
        folder: Where the sweep lives (`<storage_path>/<name>`, a path or URI).
        best: The best trial by the sweep's objective, with its checkpoint (with
            `search.confirm`, the confirmed winner's best seed, as `sweeps best` shows); None
            while no trial has reported a finite target metric with a checkpoint.
        promoted: The promoted model's folder (`<promote.to>/<name>/v<N>`, ready for
            `from_pretrained`); None when the spec does not promote or nothing is promoted yet.
        trials: Every report of every trial, one row each, as in `results.parquet`
            (`trial_id`, the metrics, `training_iteration`, `checkpoint_path`, `param.*`,
            `trial_status`, `stopped_early`).
    """

    spec: SweepSpec
    folder: str
    best: BestTrial | None
    promoted: str | None
    trials: pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        """One row per trial: id, status, stopped early, parameters, reports, best target
        metric (what `sweeps status` shows)."""
        import pandas as pd

        return pd.DataFrame(self._results().table())

    @property
    def finished(self) -> bool:
        """Whether the sweep is finished: every trial ended, and the planned ones are there."""
        from sweeps.results.summaries import finished

        return finished(self._results().trials(), self.spec.trials)

    def _results(self) -> SweepResults:
        from sweeps.results.queries import SweepResults
        from sweeps.store.storage import Location

        return SweepResults(Location.of(self.folder), self.spec.objective)


def run(
    spec: str | Path | dict[str, Any] | SweepSpec,
    overrides: list[str] | None = None,
    *,
    restart: bool = False,
    progress: TextIO | None = None,
) -> Sweep:
    """Runs (or resumes) a sweep and returns it, as `sweeps run` does.

    Starts a local Ray runtime unless one is running or `RAY_ADDRESS` names a cluster; it is
    left running for the next call.

    Args:
        spec: A sweep YAML path, the same content as a mapping (W&B sweep format included),
            or a `SweepSpec`.
        overrides: `--set` overrides, e.g. `["search.num_samples=4"]`.
        restart: Discard an existing sweep of this name instead of resuming it.
        progress: Where the one-line progress goes (e.g. `sys.stdout`); None prints nothing.

    Returns:
        The sweep's best trial, promoted model and reports.

    Raises:
        FinetuneError: on bad input (spec, data, model, resources, storage), before any trial.

    Example:
        >>> sweep = run("sweeps/examples/laptop.yaml", ["search.num_samples=2"])  # doctest: +SKIP
        >>> sweep.trials.groupby("trial_id")["val_accuracy"].max()  # doctest: +SKIP
    """
    from sweeps.running.runner import run_sweep
    from sweeps.store.storage import Location

    typed = _typed(spec, overrides or [])
    outcome = run_sweep(typed, restart=restart, progress=progress)
    promoted = outcome.promotion.location if outcome.promotion else None
    folder = Location.of(typed.storage_path).join(typed.name)
    return Sweep(
        spec=typed,
        folder=folder.uri,
        best=outcome.best,
        promoted=str(promoted) if promoted else None,
        trials=_frame(folder.uri),
    )


def load(name_or_path: str | Path) -> Sweep:
    """Reads a finished or running sweep.

    Args:
        name_or_path: A sweep YAML path; a sweep's folder (`<storage_path>/<name>`, local or
            a URI), which holds the spec it started with; or a bare sweep name under the
            default storage path (`./results/sweeps/<name>`).

    Raises:
        SpecError: when it is none of these.

    Example:
        >>> sweeps.load("results/sweeps/laptop").best.trial_id  # doctest: +SKIP
    """
    import yaml

    from sweeps.errors import SpecError
    from sweeps.results.confirmation import confirmed_best
    from sweeps.running.resume import SPEC_FILE
    from sweeps.spec import SweepSpec, load_spec, parse_spec
    from sweeps.store import storage
    from sweeps.store.storage import Location

    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        typed = load_spec(text)
        folder = Location.of(typed.storage_path).join(typed.name)
    else:
        candidates = [Location.of(text)]
        if "/" not in text and "://" not in text:
            candidates.append(
                Location.of(SweepSpec.model_fields["storage_path"].default).join(text)
            )
        found = [c for c in candidates if storage.exists(c.join(SPEC_FILE))]
        if not found:
            raise SpecError(
                f"{text}: neither a sweep YAML nor a sweep folder (no {SPEC_FILE} in "
                + " or ".join(str(c) for c in candidates)
                + ")"
            )
        folder = found[0]
        saved = yaml.safe_load(storage.read_text(folder.join(SPEC_FILE)))
        typed = parse_spec(saved, source=str(folder.join(SPEC_FILE)))
        # Where the folder is, not the saved storage_path: a relative one meant the sweep's
        # working directory, which need not be this one.
        parent = Location(folder.scheme, posixpath.dirname(folder.path), folder.query)
        typed = typed.model_copy(update={"storage_path": parent.uri})
    return Sweep(
        spec=typed,
        folder=folder.uri,
        best=confirmed_best(typed),
        promoted=_promoted(typed),
        trials=_frame(folder.uri),
    )


def _typed(spec: str | Path | dict[str, Any] | SweepSpec, overrides: list[str]) -> SweepSpec:
    from sweeps.spec import SweepSpec, apply_overrides, load_spec, parse_spec
    from sweeps.spec.wandb_format import from_wandb, is_wandb_sweep

    if isinstance(spec, (str, Path)):
        return load_spec(spec, overrides)
    raw = spec.as_mapping() if isinstance(spec, SweepSpec) else dict(spec)
    if is_wandb_sweep(raw):
        # As `load_spec` does: overrides name this package's keys, so they follow the translation.
        raw = from_wandb(raw, default_name="sweep")
    return parse_spec(apply_overrides(raw, overrides))


def _frame(folder: str) -> pd.DataFrame:
    import pandas as pd

    from sweeps.results.results_file import RESULTS_FILE, read_table
    from sweeps.store.storage import Location

    table = read_table(Location.of(folder).join(RESULTS_FILE).uri)
    return pd.DataFrame({"trial_id": []}) if table is None else table.to_pandas()


def _promoted(spec: SweepSpec) -> str | None:
    from sweeps.errors import PromotionError
    from sweeps.store.model_versions import resolve
    from sweeps.store.storage import Location

    if spec.promote is None:
        return None
    try:
        return str(resolve(Location.of(spec.promote.to).join(spec.name).uri))
    except PromotionError:
        return None
