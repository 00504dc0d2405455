"""Text tokenized once per sweep (`trainables/prepared.py`): the tokens a rank reads back are
the tokenizer's own, and tokens prepared for other data or another length are never used."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from trainables.config import FinetuneConfig, parse_config
from trainables.prepared import load_tokens, prepare_tokens
from trainables.tasks import prepare_task


def job(model_dir: str, files: dict[str, str], max_length: int = 32) -> FinetuneConfig:
    return parse_config(
        {
            "model": {"name_or_path": model_dir},
            "data": {
                **files,
                "text_column": "sentence",
                "label_column": "sentiment",
                "max_length": max_length,
            },
        }
    )


def prepared(cfg: FinetuneConfig, folder: Path) -> str:
    location = prepare_tokens(cfg, str(folder))
    assert location is not None
    return location


def test_prepared_tokens_are_the_tokenizers_own_ids_and_the_files_labels(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files)
    loaded = load_tokens(cfg, prepared(cfg, tmp_path))
    assert loaded is not None
    splits, names = loaded
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with open(separable_files["validation"]) as handle:
        rows = list(csv.DictReader(handle))
    want = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=32)["input_ids"]
    got = splits["validation"].features["input_ids"]
    assert len(got) == len(want)
    assert all(got[i].tolist() == want[i] for i in range(len(want)))
    labels = [names[i] for i in splits["validation"].labels]
    assert labels == [r["sentiment"] for r in rows]


def test_a_task_from_prepared_tokens_batches_as_one_that_tokenized_itself(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files)
    mine, theirs = prepare_task(cfg), prepare_task(cfg, prepared_data=prepared(cfg, tmp_path))
    assert theirs.splits == mine.splits
    rows = list(range(0, mine.splits["train"], 7))
    a, b = mine.batch("train", rows, train=True), theirs.batch("train", rows, train=True)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_tokens_prepared_for_another_max_length_are_not_used(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, separable_files, max_length=32)
    location = prepared(cfg, tmp_path)
    assert load_tokens(cfg, location) is not None  # the control: its own length reads them
    shorter = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": 16})})
    assert load_tokens(shorter, location) is None


def test_an_edited_data_file_is_not_read_from_the_tokens_of_its_old_version(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    files = {name: str(tmp_path / Path(path).name) for name, path in separable_files.items()}
    for name, path in separable_files.items():
        Path(files[name]).write_text(Path(path).read_text())
    cfg = job(tiny_model_dir, files)
    location = prepared(cfg, tmp_path / "tokens")
    assert load_tokens(cfg, location) is not None

    with open(files["train"], "a") as handle:
        handle.write("an added row,pos\n")

    assert load_tokens(cfg, location) is None
