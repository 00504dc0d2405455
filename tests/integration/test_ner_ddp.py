"""Token classification under real Ray Train DDP (2 CPU workers, gloo) on a tiny BERT: the
entity metrics two ranks report are those of the whole split in one process, exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.ner_data import write_conll
from trainables.config import FinetuneConfig, parse_config
from trainables.evaluation import evaluate_folder
from trainables.trainer import build_trainer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


@pytest.mark.timeout(300)
def test_two_worker_ner_metrics_equal_one_process_evaluation_of_the_same_weights(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    files = {
        "train": write_conll(tmp_path / "train.conll", 200, seed=1, long_every=9),
        # Odd sizes with long sentences: the ranks' shards differ, and windows of one sentence
        # (max_length 32) must be scored together.
        "validation": write_conll(tmp_path / "dev.conll", 41, seed=2, long_every=7),
        "test": write_conll(tmp_path / "test.conll", 31, seed=3, long_every=5),
    }

    def job(workers: int) -> FinetuneConfig:
        return parse_config(
            {
                "model": {"name_or_path": tiny_model_dir},
                "data": {**files, "max_length": 32},
                "optimizer": {"lr": 3e-3},
                "training": {"batch_size": 8, "max_steps": 40, "eval_every": 40, "seed": 3},
                "scaling": {"num_workers": workers},
            }
        )

    result = build_trainer(job(2), run_name="ddp", storage_path=str(tmp_path / "runs")).fit()
    reported = result.metrics
    # Entities were predicted and some were right: equal zeros would prove nothing.
    assert 0.2 < reported["val_f1_entity"] < 1.0
    assert reported["val_precision_entity"] != reported["val_recall_entity"]

    with result.checkpoint.as_directory() as folder:
        for split, prefix in (("validation", "val_"), ("test", "test_")):
            whole = evaluate_folder(job(1), folder, split)
            assert whole is not None
            for name in ("f1_entity", "precision_entity", "recall_entity", "token_accuracy"):
                # Ratios of integer counts: equal to the last bit when the counts are.
                assert reported[prefix + name] == whole[prefix + name], prefix + name
            # A sum of float losses in another order: equal to rounding.
            assert math.isclose(reported[prefix + "loss"], whole[prefix + "loss"], rel_tol=1e-6)
