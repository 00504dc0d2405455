"""What "better" means for a metric: the one place a best value is decided.

The loop's early stopping, Train's checkpoint retention, the sweep's best trial, promotion,
the progress line and W&B summaries all ask an `Objective`, so a metric and its direction are
never compared by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, TypeVar

Mode = Literal["min", "max"]
T = TypeVar("T")


def is_finite_number(value: Any) -> TypeGuard[float]:
    """A real number that is neither NaN nor infinite (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Objective:
    """A metric to optimise and its direction.

    Example:
        >>> Objective("val_loss", "min").better(0.3, than=0.5)
        True
        >>> Objective("val_accuracy", "max").best([0.7, float("nan"), 0.9])
        0.9
    """

    metric: str
    mode: Mode = "max"

    @classmethod
    def of(cls, metric: str) -> Objective:
        """The natural direction of a reported metric: losses and errors (MSE, RMSE) go down,
        everything else up (see `trainables.reporting.natural_mode`)."""
        from trainables.reporting import natural_mode

        return cls(metric, natural_mode(metric))

    def better(self, value: Any, than: float | None) -> bool:
        """Whether `value` is finite and strictly better than `than` (None: nothing yet)."""
        if not is_finite_number(value):
            return False
        return than is None or (value > than if self.mode == "max" else value < than)

    def best(self, values: Iterable[Any]) -> float | None:
        """The best finite value; None when there is none. Ties keep the first."""
        found: float | None = None
        for value in values:
            if self.better(value, found):
                found = float(value)
        return found

    def ranked(self, items: Iterable[T], value: Callable[[T], float]) -> list[T]:
        """`items` best first by `value(item)`; ties keep their order."""
        return sorted(items, key=value, reverse=self.mode == "max")

    def value_of(self, result: dict[str, Any]) -> float | None:
        """The metric in a report, when it is a finite number."""
        value: Any = result.get(self.metric)
        return float(value) if is_finite_number(value) else None
