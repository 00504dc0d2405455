"""Search-space parameters: one distribution over one dotted job field, maybe conditional.

A space maps a dotted path of the job (`optimizer.lr`, `training.batch_size`) to exactly one
of `choice`, `grid`, `uniform`, `loguniform`, `randint` (inclusive bounds), `normal` or
`lognormal` ([mu, sigma]; lognormal's log is normal), optionally `q` (quantization step) and
`when` (a condition on other fields: the parameter exists only in trials where every named field
has the given value).
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The distributions a parameter may name (exactly one of them).
KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "normal", "lognormal")
# Normal parameters are searched as their CDF value u in (0, 1), so random draws follow the
# normal and TPE/GP model a bounded variable. u stops 1e-4 short of 0 and 1: draws are truncated
# at mu +- 3.72 sigma (99.98% of the mass), and both edges are checked against the job's bounds.
_U_EDGE = 1e-4


class Param(BaseModel):
    """One search dimension.

    Example:
        >>> Param.model_validate({"loguniform": [1e-5, 1e-3]}).kind
        'loguniform'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: tuple[Any, ...] | None = Field(default=None, min_length=1)
    grid: tuple[Any, ...] | None = Field(default=None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    normal: tuple[float, float] | None = None
    lognormal: tuple[float, float] | None = None
    q: float | None = Field(default=None, gt=0)
    when: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def is_discrete(self) -> bool:
        return self.kind in ("choice", "grid")

    @model_validator(mode="after")
    def _one_distribution(self) -> Param:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)}; got {given or 'none'}")
        kind = given[0]
        if kind in ("uniform", "loguniform", "randint"):
            low, high = getattr(self, kind)
            if not low < high:
                raise ValueError(f"{kind} bounds need low < high; got [{low}, {high}]")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform bounds must be > 0; got [{low}, {high}]")
        if kind in ("normal", "lognormal") and not getattr(self, kind)[1] > 0:
            raise ValueError(
                f"{kind} is [mu, sigma] with sigma > 0; got {list(getattr(self, kind))}"
            )
        if self.q is not None and kind in ("choice", "grid"):
            raise ValueError("q quantizes a range; it does not apply to choice or grid")
        return self

    def values(self) -> tuple[Any, ...]:
        """The finite values of a discrete parameter (choice/grid, or an unquantized int range)."""
        if self.choice is not None:
            return self.choice
        if self.grid is not None:
            return self.grid
        if self.randint is not None and self.q is None:
            return tuple(range(self.randint[0], self.randint[1] + 1))
        raise ValueError(f"{self.kind} is a continuous range")

    def bounds_samples(self) -> list[Any]:
        """A few values that span the parameter (for checking them against the job config)."""
        if self.is_discrete:
            return list(self.values())
        if self.kind in ("normal", "lognormal"):
            return [self._from_u(_U_EDGE), self._from_u(1 - _U_EDGE)]
        low, high = getattr(self, self.kind)
        if self.kind == "randint":
            return [int(low), int(high)]
        return [float(low), float(high)]

    def _from_u(self, u: float) -> float:
        mu, sigma = getattr(self, self.kind)
        x = NormalDist(mu, sigma).inv_cdf(u)
        x = math.exp(x) if self.kind == "lognormal" else x
        return _quantize(x, self.q, positive=self.kind == "lognormal") if self.q else x

    def suggest(self, trial: Any, name: str) -> Any:
        """Draws this parameter from an `optuna.Trial` (define-by-run)."""
        if self.is_discrete:
            return trial.suggest_categorical(name, list(self.values()))
        if self.kind in ("normal", "lognormal"):
            return self._from_u(trial.suggest_float(name, _U_EDGE, 1 - _U_EDGE))
        if self.kind == "randint":
            low, high = self.randint  # type: ignore[misc]
            return trial.suggest_int(name, low, high, step=int(self.q or 1))
        low, high = getattr(self, self.kind)
        if self.kind == "loguniform":
            value = trial.suggest_float(name, low, high, log=True)
            return _quantize(value, self.q, positive=True) if self.q else value
        return trial.suggest_float(name, low, high, step=self.q)

    def sample(self, rng: random.Random) -> Any:
        """One independent draw from the distribution (what `suggest` draws under random
        search, from a plain `random.Random`)."""
        if self.is_discrete:
            return rng.choice(list(self.values()))
        if self.kind in ("normal", "lognormal"):
            return self._from_u(rng.uniform(_U_EDGE, 1 - _U_EDGE))
        if self.kind == "randint":
            low, high = self.randint  # type: ignore[misc]
            step = int(self.q or 1)
            return low + step * rng.randint(0, (high - low) // step)
        low, high = getattr(self, self.kind)
        if self.kind == "loguniform":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
            return _quantize(value, self.q, positive=True) if self.q else value
        value = rng.uniform(low, high)
        return min(high, max(low, _quantize(value, self.q))) if self.q else value

    def neighbour(self, value: Any, rng: random.Random) -> Any:
        """A value next to `value`: the next or previous listed value of a choice, else
        `value` times 0.8 or 1.2, kept within the range (PBT's perturbation)."""
        if self.is_discrete:
            options = list(self.values())
            if value not in options:
                return rng.choice(options)
            index = options.index(value) + rng.choice((-1, 1))
            return options[min(max(index, 0), len(options) - 1)]
        low, high = self.range()
        moved = min(high, max(low, value * rng.choice((0.8, 1.2))))
        if self.kind == "randint":
            step = int(self.q or 1)
            steps = min(round((moved - low) / step), int(high - low) // step)
            return int(low) + step * steps
        if self.q:
            moved = min(high, max(low, _quantize(moved, self.q, positive=low > 0)))
        return moved

    def range(self) -> tuple[float, float]:
        """The lowest and highest value a range can take (normals: their truncation)."""
        if self.is_discrete:
            raise ValueError(f"{self.kind} is not a range")
        if self.kind in ("normal", "lognormal"):
            low, high = self._from_u(_U_EDGE), self._from_u(1 - _U_EDGE)
            return float(low), float(high)
        low, high = getattr(self, self.kind)
        return float(low), float(high)


def _quantize(value: float, q: float, positive: bool = False) -> float:
    rounded = round(round(value / q) * q, 12)
    # A log-scale value must stay > 0 after rounding.
    return q if positive and rounded <= 0 else rounded


def active(param: Param, chosen: dict[str, Any]) -> bool:
    """Whether a conditional parameter applies given the values chosen so far."""
    return all(chosen.get(key) == value for key, value in (param.when or {}).items())


def grid_size(space: dict[str, Param]) -> int:
    """Number of points of the full grid."""
    return math.prod(len(p.values()) for p in space.values())
