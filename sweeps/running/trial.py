"""The per-trial driver: one Tune trial builds and fits one `TorchTrainer`.

The driver only turns the trial's sampled values into a job and runs it; the loop reports
through `TuneReportCallback`, and knows nothing of Tune.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from sweeps.spec import apply_params
from trainables.config import FinetuneConfig
from trainables.trainer import build_trainer


def make_trial_driver(
    base_job: FinetuneConfig, train_storage: str, max_failures: int = 0
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable that runs one fine-tuning job per trial.

    Args:
        base_job: The sweep's job before the trial's parameters.
        train_storage: Where each trial's Train run (checkpoints) lives, under its trial id.
        max_failures: Worker-group restarts inside a trial. 0 by default: Tune retries a
            failed trial instead (resuming its Train run from the latest checkpoint), because a
            Train controller that is restarting its worker group when Tune stops the trial
            (ASHA) creates a placement group after it dies, which nobody removes: it held the
            CPUs of every later trial on the laptop sweep here.
    """

    def run_trial(params: dict[str, Any]) -> None:
        trial_id = ray.tune.get_context().get_trial_id()
        # A restored trial keeps its id, so its Train run resumes from its own checkpoints.
        job = apply_params(base_job, params, name=trial_id, source=f"trial {trial_id}")
        trainer = build_trainer(
            job,
            run_name=trial_id,
            storage_path=train_storage,
            callbacks=[TuneReportCallback()],
            max_failures=max_failures,
        )
        trainer.fit()

    return run_trial
