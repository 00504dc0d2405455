"""What a run of a job is handed besides the job: the tuner's concerns, not the job's."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrialInputs:
    """What a sweep hands one trial's run beside its job (`FinetuneConfig`).

    Attributes:
        start_from: A checkpoint folder or URI to start from when the run has no checkpoint of
            its own: weights, optimizer state, loop position and RNG streams (PBT's exploit).
        prepared_data: Where the sweep tokenized its data once for all its trials
            (`trainables/prepared.py`); a run uses the tokens when they are its own job's.

    Example:
        >>> TrialInputs.from_dict(TrialInputs(start_from="/runs/t1/checkpoint_x").to_dict())
        TrialInputs(start_from='/runs/t1/checkpoint_x', prepared_data=None)
    """

    start_from: str | None = None
    prepared_data: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what travels to Train workers in `train_loop_config`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialInputs:
        return cls(**values)


#: A run handed nothing beside its job: it starts afresh and reads its own data.
NO_INPUTS = TrialInputs()
