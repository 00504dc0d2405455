"""Live progress on the terminal: one line per change, with the best trial so far.

[laptop 1m12s] 1 running, 3 done (2 stopped early), 0 errored, 4 to go | best val_accuracy
0.9475 at trial 1e9ea6d2 (optimizer.lr=0.00012, model.freeze=none) | trivial predictor 0.5
(noise 0.044)

The trivial predictor's figure (`sweeps.store.trivial`) ends the line, with "nothing learned"
while the best does not beat it by more than the validation noise.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from ray.tune import Callback

from sweeps.results.tune_results import Planned, params_at, stopped_by_tune
from sweeps.store.trivial import compare
from trainables.objective import Objective


class SweepProgress(Callback):
    """A Tune callback that writes trial counts and the best target metric as the sweep runs.

    Args:
        name: The sweep's name, on every line.
        objective: The target metric and its direction.
        total: Trials the sweep will run.
        planned: A trial's config -> the step its job ends at if nothing stops it; a trial Tune
            stops before it (a scheduler's decision) counts as stopped early.
        stream: Where lines go.
        every_s: At most one line per this many seconds for results that change nothing else;
            trial starts and ends write one at most every second (or `every_s`, if shorter).
        trivial: The sweep's trivial predictor record, shown beside the best trial.
    """

    def __init__(
        self,
        name: str,
        objective: Objective,
        total: int,
        planned: Planned | None,
        stream: TextIO,
        every_s: float = 30.0,
        trivial: dict[str, Any] | None = None,
    ) -> None:
        self.trivial = trivial
        self.name, self.objective, self.total = name, objective, total
        self.planned, self.stream, self.every_s = planned, stream, every_s
        self.started = time.monotonic()
        self.last_line = 0.0
        self.best: tuple[float, str, dict[str, Any]] | None = None
        self.stopped: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Tune saves callbacks with the sweep's state; a stream does not pickle.
        return {**self.__dict__, "stream": None}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._may_write():
            self._write(trials, starting=trial.trial_id)

    def _may_write(self) -> bool:
        # A line counts every trial: at most one a second for starts and ends keeps a sweep of
        # many short trials from spending its driver's time (and the user's screen) on lines.
        return time.monotonic() - self.last_line >= min(1.0, self.every_s)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if result.get("done") and stopped_by_tune(result, params_at(result, trial), self.planned):
            self.stopped.add(trial.trial_id)
        value = self.objective.value_of(result)
        improved = self.objective.better(value, self.best[0] if self.best else None)
        if improved and value is not None:
            self.best = (value, trial.trial_id, params_at(result, trial))
        if improved or time.monotonic() - self.last_line >= self.every_s:
            self._write(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._may_write():
            self._write(trials)

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._write(trials)

    def line(self, trials: list, starting: str | None = None) -> str:
        """The progress line for the trials Tune knows now (`starting`: one Tune is starting)."""
        status = ["RUNNING" if t.trial_id == starting else t.status for t in trials]
        done = [t for t in trials if t.status == "TERMINATED"]
        early = sum(1 for t in done if t.trial_id in self.stopped)
        elapsed = int(time.monotonic() - self.started)
        text = (
            f"[{self.name} {elapsed // 60}m{elapsed % 60:02d}s] {status.count('RUNNING')} running, "
            f"{len(done)} done ({early} stopped early), {status.count('ERROR')} errored, "
            f"{max(0, self.total - len(trials) + status.count('PENDING'))} to go"
        )
        metric = self.objective.metric
        if self.best is None:
            return text + f" | no {metric} yet"
        value, trial_id, config = self.best
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(config.items()))
        text += f" | best {metric} {value:.4g} at trial {trial_id} ({params})"
        versus = compare(self.trivial, self.objective, value)
        if versus is not None:
            text += f" | trivial predictor {versus.trivial:.4g} (noise {versus.noise:.2g})"
            text += "" if versus.beats else ": nothing learned yet"
        return text

    def _write(self, trials: list, starting: str | None = None) -> None:
        self.last_line = time.monotonic()
        if self.stream is not None:
            print(self.line(trials, starting), file=self.stream, flush=True)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
