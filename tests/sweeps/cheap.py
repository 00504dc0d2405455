"""A cheap function trainable for the sweep tests, in a module of its own.

Tune's trial actors import the module a trainable lives in: this one needs only `ray.tune`,
which they hold already, where the test modules pull in the search methods, Optuna and
scikit-learn (~3 s per actor process, every `fit()`).
"""

from __future__ import annotations

import math
from typing import Any

import ray.tune

ITERATIONS = 9


def cheap_trainable(config: dict[str, Any]) -> None:
    """A seeded learning curve: better lr -> higher plateau; 9 reports."""
    quality = 1.0 - abs(math.log10(config["optimizer.lr"]) + 3.5) / 3
    for step in range(1, ITERATIONS + 1):
        ray.tune.report({"val_accuracy": quality * (1 - math.exp(-step / 2)), "step": step})
