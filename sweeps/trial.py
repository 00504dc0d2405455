"""The per-trial driver: one Tune trial builds and fits one `TorchTrainer`.

The driver only turns the trial's sampled values into a job and runs it; the loop reports
through `TuneReportCallback`, and knows nothing of Tune.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from sweeps.spec import set_dotted
from trainables.config import parse_config
from trainables.trainer import build_trainer


def job_for_trial(base_job: dict[str, Any], params: dict[str, Any], run_name: str) -> dict:
    """The base job with the trial's dotted parameters applied."""
    job = {**base_job, "name": run_name}
    for key, value in sorted(params.items()):
        job = set_dotted(job, key, value)
    return job


def make_trial_driver(
    base_job: dict[str, Any], train_storage: str, max_failures: int = 0
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable that runs one fine-tuning job per trial.

    Args:
        base_job: The job (a `FinetuneConfig` mapping) before the trial's parameters.
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
        cfg = parse_config(job_for_trial(base_job, params, trial_id), source=f"trial {trial_id}")
        trainer = build_trainer(
            cfg,
            run_name=trial_id,
            storage_path=train_storage,
            callbacks=[TuneReportCallback()],
            max_failures=max_failures,
        )
        trainer.fit()

    return run_trial
