"""The search-quality replay harness on a synthetic table whose answer is known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.search_quality import METHODS, ReplayTask, Table, replay

#: Four configurations, one evaluation each: one reaches val 0.9 after 5 s, three reach 0.5
#: after 10 s. They differ only in optimizer x freeze, so random search (independent uniform
#: choices) picks each with probability 1/4.
HIT_SECONDS, MISS_SECONDS = 5.0, 10.0


def write_table(path: Path) -> Path:
    rows = []
    for config_id, (optimizer, freeze) in enumerate(
        [("adamw", "none"), ("adamw", "backbone"), ("sgd", "none"), ("sgd", "backbone")]
    ):
        hit = config_id == 0
        rows.append(
            {
                "config_id": config_id,
                "seed": 0,
                "lr": 1e-4,
                "batch_size": 16,
                "optimizer": optimizer,
                "freeze": freeze,
                "weight_decay": 0.0,
                "warmup_ratio": 0.0,
                "evaluation": 1,
                "val_accuracy": 0.9 if hit else 0.5,
                "test_accuracy": 0.8 if hit else 0.5,
                "seconds": HIT_SECONDS if hit else MISS_SECONDS,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_random_search_one_worker_expected_time_to_target(tmp_path: Path) -> None:
    path = write_table(tmp_path / "curves.parquet")
    # By hand: the target is the 95th percentile of the finals (0.5, 0.5, 0.5, 0.9), i.e. 0.84,
    # which only the hit reaches. One worker runs trials back to back; the misses before the
    # first hit are geometric with p = 1/4, mean (1 - p) / p = 3, so the expected time is
    # 3 * 10 s + 5 s = 35 s (standard deviation 10 * sqrt(12) = 34.6 s).
    expected, sd = 3 * MISS_SECONDS + HIT_SECONDS, MISS_SECONDS * 12**0.5
    random_search = next(m for m in METHODS if m.name == "random")
    reps = 300
    times = [
        replay(ReplayTask(random_search, 1, rep, path, horizon=20.0)).time_to_target
        for rep in range(reps)
    ]
    assert np.isfinite(times).all()
    # horizon 20 = 700 s: P(70 misses in a row) = 0.75**70, about 2e-9.
    # Every time is some number of misses and then the hit: 5, 15, 25, ... seconds.
    assert {(t - HIT_SECONDS) % MISS_SECONDS for t in times} == {0.0}
    assert np.mean(times) == pytest.approx(expected, abs=4 * sd / reps**0.5)


def test_nearest_configuration_matches_categoricals_first(tmp_path: Path) -> None:
    table = Table.read(write_table(tmp_path / "curves.parquet"))
    assert table.nearest({"lr": 1e-6, "optimizer": "sgd", "freeze": "none"}) == 2
