"""Shared fixtures: a tiny randomly initialised BERT, small tables, one local Ray runtime."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

POSITIVE = ("good", "great", "fine", "lovely", "superb")
NEGATIVE = ("bad", "awful", "poor", "dreadful", "weak")
FILLER = ("the", "film", "was", "a", "story", "cast", "and", "plot", "this", "really", "quite")
#: `ray.init`'s arguments for the session's runtime: a test that stops it for a while (to let a
#: command start a Ray of its own) starts it again with these.
RAY_SESSION_INIT: dict[str, Any] = {
    "num_cpus": 2,
    "log_to_driver": False,
    "include_dashboard": True,
}


def separable_table(n: int, seed: int) -> pa.Table:
    """Rows whose label is decided by one keyword among filler words: easy to learn."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append("pos" if label else "neg")
    return pa.table({"sentence": texts, "sentiment": labels})


def write_csv(table: pa.Table, path: Path) -> str:
    pa_csv.write_csv(table, path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide BERT from a config (random weights) with the MiniLM tokenizer."""
    from trainables.tiny import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def separable_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("separable")
    return {
        "train": write_csv(separable_table(480, seed=1), folder / "train.csv"),
        # An odd size, so evaluation shards of 2 ranks differ in length.
        "validation": write_csv(separable_table(101, seed=2), folder / "val.csv"),
        "test": write_csv(separable_table(60, seed=3), folder / "test.csv"),
    }


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray runtime for the whole test session (token auth on, as by default).

    Trial processes inherit this environment: the fake credentials let them reach the S3 tests'
    moto server (which accepts any), as real nodes get theirs from their own environment.
    """
    import ray

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    ray.init(**RAY_SESSION_INIT)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_vision_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """timm's tiny `test_efficientnet` (random weights) saved in timm's format, 32-px input."""
    from trainables.tiny import build_tiny_vision

    return build_tiny_vision(tmp_path_factory.mktemp("tiny-vision"))


def write_digit_folder(folder: Path, per_class: int, digits: tuple[int, ...] = (0, 1)) -> str:
    """An `ImageFolder` tree of real scanned digits (scikit-learn's), `per_class` PNGs per
    class, class folders named `zero`, `one`, ..."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    scans = load_digits()
    for digit in digits:
        rows = np.flatnonzero(scans.target == digit)[:per_class]
        (folder / names[digit]).mkdir(parents=True)
        for i, row in enumerate(rows):
            grey = (scans.images[row] * (255 / 16)).astype(np.uint8)
            Image.fromarray(grey).resize((24, 24)).save(folder / names[digit] / f"{i}.png")
    return str(folder)


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """60 scans each of 0 and 1 in the `ImageFolder` layout."""
    return write_digit_folder(tmp_path_factory.mktemp("digits") / "train", per_class=60)


@pytest.fixture(scope="session")
def regression_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Sentence pairs with a float score (tests/task_data.py)."""
    from tests.task_data import regression_files

    return regression_files(tmp_path_factory.mktemp("regression"))


@pytest.fixture(scope="session")
def multi_label_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Texts with a set of topics each (tests/task_data.py)."""
    from tests.task_data import multi_label_files

    return multi_label_files(tmp_path_factory.mktemp("multi-label"))
