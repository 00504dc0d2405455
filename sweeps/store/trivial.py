"""Whether a sweep learned anything: its best trial against the trivial predictor.

The trivial predictor (`trainables.trivial`: majority class, training mean, most frequent label
set, all-`O` tags) is fitted and scored once per sweep, before its first trial, and kept beside
the results file as `trivial.json`. The progress line, `sweeps best`, the report and the
promotion manifest show its figure beside the best trial's, and a best trial that does not beat
it by more than the validation split's noise is said to have learned nothing.

The noise of a validation figure over n rows (sentences, for token classification) is twice
its standard error, by the metric's kind:

- losses and errors (`loss`, `mse`, `rmse`, ...): 2 * sd(per-row value) / sqrt(n) of the
  trivial predictor's per-row values (`trainables.trivial`).
- correlations (`pearson`, `spearman`): 2 / sqrt(n - 3), the standard error of a correlation at
  none (Fisher's z), which is the trivial predictor's.
- every other metric is a proportion or a ratio of counts in [0, 1] (accuracy, F1, precision,
  recall): 2 * sqrt(q * (1 - q) / n), the binomial standard error of a proportion over n rows,
  at q = whichever of the two figures is nearer 0.5 (the larger error). Exact for accuracy;
  for an F1 an approximation, on the conservative side when its counts are more than n.

Two standard errors: a difference smaller than that is what a second validation split of the
same size could undo. The comparison is one-sided: the best must be better by more than it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sweeps.store import storage
from sweeps.store.storage import Location
from trainables.objective import Objective, is_finite_number

#: The trivial predictor's figures, beside the sweep's results file.
TRIVIAL_FILE = "trivial.json"

_CORRELATIONS = ("pearson", "spearman")


def write_trivial(folder: Location, record: dict[str, Any]) -> None:
    """Stores a sweep's trivial predictor record (`trainables.trivial.trivial_figures`)."""
    storage.write_text(folder.join(TRIVIAL_FILE), json.dumps(record, indent=2, sort_keys=True))


def read_trivial(folder: Location) -> dict[str, Any] | None:
    """A sweep's trivial predictor record; None when it has none (yet)."""
    target = folder.join(TRIVIAL_FILE)
    if not storage.exists(target):
        return None
    record: dict[str, Any] = json.loads(storage.read_text(target))
    return record


@dataclass(frozen=True)
class Comparison:
    """The best trial's validation figure against the trivial predictor's."""

    metric: str
    best: float
    trivial: float
    noise: float
    rule: str
    predictor: str
    beats: bool
    mode: str

    def figures(self) -> str:
        """Both figures and the noise, e.g. `0.56 vs trivial 0.527 (noise 0.06)`."""
        return f"{self.best:.4g} vs trivial {self.trivial:.4g} (noise {self.noise:.2g})"

    def message(self) -> str:
        """One plain sentence: what the best trial scored against the trivial predictor."""
        margin = self.best - self.trivial if self.mode == "max" else self.trivial - self.best
        if self.beats:
            return (
                f"best {self.metric} {self.best:.4g} beats the trivial predictor's "
                f"{self.trivial:.4g} ({self.predictor}) by {margin:.4g}, more than the "
                f"validation noise {self.noise:.2g} ({self.rule})"
            )
        return (
            f"nothing was learned: the best trial's {self.metric} {self.best:.4g} does not beat "
            f"the trivial predictor's {self.trivial:.4g} ({self.predictor}) by more than the "
            f"validation noise {self.noise:.2g} ({self.rule}); difference {margin:+.4g}"
        )

    def as_dict(self) -> dict[str, Any]:
        """For a manifest or a JSON document."""
        return {
            "metric": self.metric,
            "best": self.best,
            "trivial": self.trivial,
            "noise": self.noise,
            "noise_rule": self.rule,
            "beats_trivial": self.beats,
        }


def noise_of(record: dict[str, Any], metric: str, best: float) -> tuple[float, str]:
    """Twice the standard error of `metric` over the validation split, and how it was
    computed (see the module's doc)."""
    n = int(record.get("rows", {}).get("validation", 0))
    trivial = float(record["validation"][metric])
    base = metric.removeprefix("val_")
    stored = record.get("noise", {}).get(metric)
    if is_finite_number(stored):
        return float(stored), f"2 standard errors of the trivial predictor's per-row {base}, n={n}"
    if base in _CORRELATIONS:
        noise = 2.0 / math.sqrt(n - 3) if n > 3 else math.inf
        return noise, f"2 standard errors of a correlation at none, 2/sqrt(n-3), n={n}"
    q = min((trivial, best), key=lambda v: abs(v - 0.5))
    q = min(max(q, 0.0), 1.0)
    noise = 2.0 * math.sqrt(q * (1.0 - q) / n) if n > 0 else math.inf
    return noise, f"2 binomial standard errors, 2*sqrt(q(1-q)/n), q={q:.3g}, n={n}"


def compare(record: dict[str, Any] | None, objective: Objective, best: Any) -> Comparison | None:
    """The best trial's validation `objective.metric` against the trivial predictor's; None
    when either figure is missing."""
    if record is None or not is_finite_number(best):
        return None
    trivial = record.get("validation", {}).get(objective.metric)
    if not is_finite_number(trivial):
        return None
    noise, rule = noise_of(record, objective.metric, float(best))
    margin = best - trivial if objective.mode == "max" else trivial - best
    return Comparison(
        metric=objective.metric,
        best=float(best),
        trivial=float(trivial),
        noise=noise,
        rule=rule,
        predictor=str(record.get("predictor", "")),
        beats=bool(margin > noise),
        mode=objective.mode,
    )


def manifest_entry(
    record: dict[str, Any] | None, comparison: Comparison | None
) -> dict[str, Any] | None:
    """What a promotion manifest records of the trivial predictor: its description, its
    validation and test figures, and the comparison with the promoted trial."""
    if record is None:
        return None
    entry = {
        "predictor": record.get("predictor"),
        "validation": record.get("validation", {}),
        "test": record.get("test", {}),
        "rows": record.get("rows", {}),
    }
    if comparison is not None:
        entry["comparison"] = comparison.as_dict()
    return entry
