"""Small learnable tables for the regression and multi-label tasks (made-up, seeded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa

from tests.conftest import FILLER, write_csv

#: Multi-label classes and the keywords that put a row in them.
TOPICS = {"sport": ("goal", "match"), "music": ("song", "band"), "food": ("bread", "soup")}


def regression_table(n: int, seed: int) -> pa.Table:
    """Sentence pairs whose score is the count of shared keywords (0-3) plus a little noise:
    text pairs, as STS-B's, with a float label column."""
    rng = random.Random(seed)
    keys = ("red", "blue", "green")
    first, second, scores = [], [], []
    for _ in range(n):
        shared = rng.randint(0, 3)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        a = words + list(keys[:shared])
        b = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))] + list(keys[:shared])
        rng.shuffle(a)
        rng.shuffle(b)
        first.append(" ".join(a))
        second.append(" ".join(b))
        scores.append(round(shared + rng.uniform(-0.2, 0.2), 3))
    return pa.table({"sentence1": first, "sentence2": second, "score": scores})


def multi_label_table(n: int, seed: int, json_lists: bool = False) -> pa.Table:
    """Texts with the keywords of 1-3 topics; the label column names them ("sport,food"), or
    as a JSON list when `json_lists`."""
    rng = random.Random(seed)
    texts, labels = [], []
    names = sorted(TOPICS)
    for _ in range(n):
        chosen = sorted(rng.sample(names, rng.randint(1, 3)))
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))]
        words += [rng.choice(TOPICS[t]) for t in chosen]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(json.dumps(chosen) if json_lists else ",".join(chosen))
    return pa.table({"text": texts, "labels": labels})


def regression_files(folder: Path) -> dict[str, str]:
    """train / validation (an odd size: DDP shards differ) / test CSVs of `regression_table`."""
    return {
        "train": write_csv(regression_table(320, seed=1), folder / "train.csv"),
        "validation": write_csv(regression_table(61, seed=2), folder / "val.csv"),
        "test": write_csv(regression_table(40, seed=3), folder / "test.csv"),
    }


def multi_label_files(folder: Path) -> dict[str, str]:
    """train / validation (odd) / test CSVs of `multi_label_table`."""
    return {
        "train": write_csv(multi_label_table(320, seed=1), folder / "train.csv"),
        "validation": write_csv(multi_label_table(61, seed=2), folder / "val.csv"),
        "test": write_csv(multi_label_table(40, seed=3), folder / "test.csv"),
    }


def regression_data(files: dict[str, str]) -> dict[str, object]:
    """The data section of a regression job on `regression_files`."""
    return {
        **files,
        "text_column": "sentence1",
        "text_pair_column": "sentence2",
        "label_column": "score",
        "max_length": 32,
    }


def multi_label_data(files: dict[str, str]) -> dict[str, object]:
    """The data section of a multi-label job on `multi_label_files`."""
    return {**files, "text_column": "text", "label_column": "labels", "max_length": 32}
