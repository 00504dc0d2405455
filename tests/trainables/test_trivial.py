"""The trivial predictor of every task (majority class, training mean, most frequent label set,
all-`O` tags): its figures equal ones computed here by hand on small fixed data, and a best
trial that does not beat it by more than the validation noise is said to have learned nothing,
in the comparison and when promoted (a clearly better one is not)."""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import f1_score

from sweeps import cli
from sweeps.results.progress import SweepProgress
from sweeps.results.queries import BestTrial
from sweeps.store.model_versions import promote
from sweeps.store.storage import Location
from sweeps.store.trivial import compare
from tests.conftest import write_csv, write_digit_folder
from trainables.config import FinetuneConfig, parse_config
from trainables.objective import Objective
from trainables.trivial import trivial_figures

WORDS = ["the film", "a story", "quite good", "really bad", "the cast", "plot and cast"]


def csv(folder: Path, name: str, labels: list[Any], column: str = "label") -> str:
    texts = [WORDS[i % len(WORDS)] for i in range(len(labels))]
    return write_csv(pa.table({"text": texts, column: labels}), folder / f"{name}.csv")


def text_job(model_dir: str, task: str, files: dict[str, str], **data: Any) -> FinetuneConfig:
    return parse_config(
        {
            "task": task,
            "model": {"name_or_path": model_dir},
            "data": {**files, "text_column": "text", "label_column": "label", **data},
        }
    )


def cross_entropy(probabilities: dict[str, float], truth: list[str]) -> float:
    return -sum(math.log(probabilities[t]) for t in truth) / len(truth)


# ----------------------------------------------------------------------------- per task


def test_text_classification_scores_the_majority_class(tmp_path: Path, tiny_model_dir: str) -> None:
    train = ["pos", "pos", "pos", "neg"]
    validation = ["pos", "neg", "neg", "pos", "pos"]
    files = {
        "train": csv(tmp_path, "train", train),
        "validation": csv(tmp_path, "val", validation),
        "test": csv(tmp_path, "test", ["neg", "neg"]),
    }
    record = trivial_figures(text_job(tiny_model_dir, "text", files))

    prior = {"pos": 4 / 6, "neg": 2 / 6}  # add-one: (3 + 1) / (4 + 2), (1 + 1) / (4 + 2)
    assert "'pos'" in record["predictor"]
    assert record["validation"] == pytest.approx(
        {
            "val_loss": cross_entropy(prior, validation),
            "val_accuracy": 3 / 5,
            "val_f1_macro": f1_score(validation, ["pos"] * 5, average="macro"),
        }
    )
    assert record["test"] == pytest.approx(
        {"test_loss": math.log(3), "test_accuracy": 0.0, "test_f1_macro": 0.0}
    )


def test_image_classification_scores_the_majority_class(
    tmp_path: Path, tiny_vision_dir: str
) -> None:
    train, validation = tmp_path / "train", tmp_path / "validation"
    write_digit_folder(train, per_class=6, digits=(0,))
    write_digit_folder(train, per_class=2, digits=(1,))
    write_digit_folder(validation, per_class=2, digits=(0,))
    write_digit_folder(validation, per_class=3, digits=(1,))
    cfg = parse_config(
        {
            "model": {"name_or_path": tiny_vision_dir},
            "data": {"train": str(train), "validation": str(validation), "image_size": 32},
            "training": {"batch_size": 4},
        }
    )
    record = trivial_figures(cfg)

    truth = ["zero"] * 2 + ["one"] * 3
    prior = {"zero": 7 / 10, "one": 3 / 10}  # (6 + 1) / (8 + 2), (2 + 1) / (8 + 2)
    assert "'zero'" in record["predictor"]
    assert record["validation"] == pytest.approx(
        {
            "val_loss": cross_entropy(prior, truth),
            "val_accuracy": 2 / 5,
            "val_f1_macro": f1_score(truth, ["zero"] * 5, average="macro"),
        }
    )


def test_regression_scores_the_training_mean(tmp_path: Path, tiny_model_dir: str) -> None:
    files = {
        "train": csv(tmp_path, "train", [1.0, 2.0, 3.0, 6.0]),
        "validation": csv(tmp_path, "val", [0.0, 3.0, 5.0]),
    }
    record = trivial_figures(text_job(tiny_model_dir, "regression", files))

    mse = ((0 - 3) ** 2 + (3 - 3) ** 2 + (5 - 3) ** 2) / 3  # the training mean is 3
    assert record["validation"] == pytest.approx(
        {
            "val_loss": mse,
            "val_mse": mse,
            "val_rmse": math.sqrt(mse),
            "val_pearson": 0.0,  # a constant has no correlation
            "val_spearman": 0.0,
        }
    )


def test_a_losss_noise_is_twice_the_standard_error_of_its_per_row_values(
    tmp_path: Path, tiny_model_dir: str
) -> None:
    files = {
        "train": csv(tmp_path, "train", [1.0, 2.0, 3.0, 6.0]),
        "validation": csv(tmp_path, "val", [0.0, 3.0, 5.0]),
    }
    record = trivial_figures(text_job(tiny_model_dir, "regression", files))

    squared = np.array([9.0, 0.0, 4.0])
    mse_noise = 2 * float(np.std(squared, ddof=1)) / math.sqrt(3)
    assert record["noise"] == pytest.approx(
        {
            "val_loss": mse_noise,
            "val_mse": mse_noise,
            "val_rmse": mse_noise / (2 * math.sqrt(squared.mean())),
        }
    )


def test_multi_label_scores_the_most_frequent_label_set(
    tmp_path: Path, tiny_model_dir: str
) -> None:
    files = {
        "train": csv(tmp_path, "train", ["sport", "sport", "sport,food", "music"]),
        "validation": csv(tmp_path, "val", ["sport", "food", "sport,music"]),
    }
    record = trivial_figures(text_job(tiny_model_dir, "multi_label", files))

    names = ["food", "music", "sport"]
    truth = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 1]])
    predicted = np.array([[0, 0, 1]] * 3)  # {sport}: 2 of 4 training rows
    # Probabilities: training frequencies, add-one ((count + 1) / (4 + 2)); sport's 4/6 is
    # already above the 0.5 threshold, food's and music's 2/6 below it.
    p = np.array([2 / 6, 2 / 6, 4 / 6])
    bce = -(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean(axis=1).mean()
    assert "['sport']" in record["predictor"] and len(names) == 3
    assert record["validation"] == pytest.approx(
        {
            "val_loss": bce,
            "val_f1_micro": f1_score(truth, predicted, average="micro"),
            "val_f1_macro": f1_score(truth, predicted, average="macro", zero_division=0),
            "val_subset_accuracy": 1 / 3,
        }
    )


def conll(path: Path, sentences: list[list[tuple[str, str]]]) -> str:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n")
    return str(path)


def test_token_classification_tags_every_word_o(tmp_path: Path, tiny_model_dir: str) -> None:
    train = [
        [("alice", "B-PER"), ("went", "O"), ("home", "O")],
        [("the", "O"), ("film", "O"), ("bob", "B-PER"), ("smith", "I-PER")],
    ]
    validation = [
        [("carol", "B-PER"), ("jones", "I-PER"), ("left", "O")],
        [("a", "O"), ("story", "O")],
    ]
    cfg = parse_config(
        {
            "task": "token_classification",
            "model": {"name_or_path": tiny_model_dir},
            "data": {
                "train": conll(tmp_path / "train.conll", train),
                "validation": conll(tmp_path / "val.conll", validation),
            },
        }
    )
    record = trivial_figures(cfg)

    # Training words: 4 O, 2 B-PER, 1 I-PER; add-one over the 3 tags.
    prior = {"O": 5 / 10, "B-PER": 3 / 10, "I-PER": 2 / 10}
    truth = [t for s in validation for _, t in s]
    assert "'O'" in record["predictor"]
    assert record["validation"] == pytest.approx(
        {
            "val_loss": cross_entropy(prior, truth),  # the first piece of each word
            "val_f1_entity": 0.0,  # no entity predicted: seqeval's 0 for an empty ratio
            "val_precision_entity": 0.0,
            "val_recall_entity": 0.0,
            "val_token_accuracy": 3 / 5,
        }
    )


# ----------------------------------------------------------------------------- the verdict

#: GLUE RTE with the embedded MiniLM (issue 27): the majority class on 277 validation rows.
RTE = {
    "predictor": "always the majority class 'not_entailment'",
    "validation": {"val_loss": 0.6918, "val_accuracy": 0.527},
    "test": {"test_accuracy": 0.527},
    "rows": {"train": 2490, "validation": 277},
    "noise": {"val_loss": 0.0004},
}


def rte_noise(best: float) -> float:
    # The binomial standard error at the figure nearer 0.5 (0.527, for best 0.56), twice.
    q = min(0.527, best, key=lambda v: abs(v - 0.5))
    return 2 * math.sqrt(q * (1 - q) / 277)


def test_a_best_within_the_noise_of_the_trivial_predictor_learned_nothing() -> None:
    versus = compare(RTE, Objective.of("val_accuracy"), 0.56)
    assert versus is not None and not versus.beats
    assert versus.noise == pytest.approx(rte_noise(0.56))
    message = versus.message()
    assert message.startswith("nothing was learned")
    assert "0.56" in message and "0.527" in message and "binomial" in message


def test_a_clearly_better_best_beats_the_trivial_predictor() -> None:
    versus = compare(RTE, Objective.of("val_accuracy"), 0.70)
    assert versus is not None and versus.beats
    assert versus.noise == pytest.approx(rte_noise(0.70))
    assert "nothing was learned" not in versus.message()


def test_a_minimised_metric_must_be_lower_by_more_than_its_noise() -> None:
    assert not compare(RTE, Objective.of("val_loss"), 0.6916).beats  # type: ignore[union-attr]
    assert compare(RTE, Objective.of("val_loss"), 0.68).beats  # type: ignore[union-attr]


def checkpoint(tmp_path: Path, model_dir: str, separable: dict[str, str]) -> FinetuneConfig:
    """A text job and an untrained checkpoint of it (what promotion copies and scores)."""
    from trainables.tasks import prepare_task

    cfg = parse_config(
        {
            "model": {"name_or_path": model_dir},
            "data": {**separable, "text_column": "sentence", "label_column": "sentiment"},
        }
    )
    task = prepare_task(cfg)
    task.save(task.build_model(cfg.model), tmp_path / "ckpt")
    return cfg


@pytest.mark.parametrize(("best", "warns"), [(0.56, True), (0.70, False)])
def test_a_promotion_that_learned_nothing_warns_naming_both_figures(
    best: float,
    warns: bool,
    tmp_path: Path,
    tiny_model_dir: str,
    separable_files: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = checkpoint(tmp_path, tiny_model_dir, separable_files)
    trial = BestTrial("t1", {}, {"val_accuracy": best}, Location.of(str(tmp_path / "ckpt")))
    with caplog.at_level(logging.WARNING, logger="sweeps"):
        done = promote(
            trial,
            cfg,
            str(tmp_path / "models"),
            sweep="s",
            objective=Objective.of("val_accuracy"),
            spec_sha256="0" * 64,
            trivial=RTE,
        )
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("sweeps")
    ]
    entry = done.manifest["trivial_predictor"]
    assert entry["validation"] == RTE["validation"] and entry["test"] == RTE["test"]
    assert entry["comparison"]["beats_trivial"] is not warns
    if warns:
        assert len(warnings) == 1
        assert "nothing was learned" in warnings[0]
        assert f"{best:.4g}" in warnings[0] and "0.527" in warnings[0]
    else:
        assert warnings == []


@pytest.mark.parametrize(("best", "learned"), [(0.56, False), (0.70, True)])
def test_the_progress_line_shows_the_trivial_figure_beside_the_best(
    best: float, learned: bool
) -> None:
    progress = SweepProgress("s", Objective.of("val_accuracy"), 2, None, io.StringIO(), trivial=RTE)
    progress.best = (best, "t1", {"optimizer.lr": 1e-4})
    line = progress.line([])
    assert f"best val_accuracy {best:.4g} at trial t1" in line
    assert "trivial predictor 0.527 (noise 0.06)" in line
    assert ("nothing learned" in line) is not learned


@pytest.mark.parametrize(("best", "learned"), [(0.56, False), (0.70, True)])
def test_sweeps_best_prints_the_trivial_figures_and_the_verdict(
    best: float, learned: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = BestTrial("t1", {}, {"val_accuracy": best}, Location.of("/nowhere"))
    cli._print_best(trial, Objective.of("val_accuracy"), RTE)
    out = capsys.readouterr().out
    assert '"val_accuracy": 0.527' in out and '"test_accuracy": 0.527' in out
    assert ("nothing was learned" in out) is not learned


@pytest.mark.parametrize(("best", "learned"), [(0.56, False), (0.70, True)])
def test_the_report_shows_the_trivial_figures_and_the_verdict(best: float, learned: bool) -> None:
    from sweeps.results.report import _trivial_paragraph

    page = _trivial_paragraph(RTE, Objective.of("val_accuracy"), best)
    assert "val_accuracy 0.527" in page and "test_accuracy 0.527" in page
    assert f"{best:.4g}" in page
    assert ("nothing was learned" in page) is not learned
