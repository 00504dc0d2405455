"""Token classification as a task, in process (no Ray): the job's config, bad input named
before anything runs, a run that resumes to the weights of one never stopped, and a promoted
model that loads as a token classifier, tags a sentence in `sweeps verify` and scores what
seqeval scores on its predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray.train
import torch
from safetensors.torch import load_file
from seqeval.metrics import accuracy_score, classification_report
from transformers import AutoModelForTokenClassification

from sweeps import cli
from sweeps.errors import SpecError
from sweeps.results.queries import BestTrial
from sweeps.spec import parse_spec
from sweeps.store.model_versions import promote
from sweeps.store.storage import Location
from tests.ner_data import write_conll
from trainables.config import FinetuneConfig, parse_config
from trainables.evaluation import evaluate_folder
from trainables.in_process import run_in_process
from trainables.objective import Objective
from trainables.tasks.token_classification import load_tagger, read_dataset

EVERY = 10


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("ner")
    return {
        "train": write_conll(folder / "train.conll", 200, seed=1, long_every=9),
        # An odd size: two ranks' shards differ in length.
        "validation": write_conll(folder / "dev.conll", 41, seed=2, long_every=7),
        "test": write_conll(folder / "test.conll", 30, seed=3, long_every=7),
    }


def job(
    model_dir: str, files: dict[str, str], max_length: int = 32, **training: Any
) -> FinetuneConfig:
    return parse_config(
        {
            "model": {"name_or_path": model_dir},
            "data": {**files, "max_length": max_length},
            "optimizer": {"lr": 3e-3},
            "training": {
                "batch_size": 8,
                "max_steps": 2 * EVERY,
                "eval_every": EVERY,
                "seed": 5,
                "monitor": "val_f1_entity",
                "checkpoints_to_keep": None,
                **training,
            },
        }
    )


# --------------------------------------------------------------------------- config and input


def test_a_conll_train_file_makes_the_job_token_classification(
    ner_files: dict[str, str],
) -> None:
    cfg = parse_config({"data": ner_files, "training": {"monitor": "val_f1_entity"}})
    assert cfg.task == "token_classification"


def test_entity_f1_is_a_search_target_maximised(ner_files: dict[str, str]) -> None:
    spec = parse_spec(
        {"name": "n", "job": {"data": ner_files}, "search": {"metric": "val_f1_entity"}}
    )
    assert spec.search.mode == "max" and spec.job.training.monitor == "val_f1_entity"


def test_a_ner_sweep_naming_no_metric_selects_by_entity_f1(ner_files: dict[str, str]) -> None:
    # seqeval's overall F1, what CoNLL and WNUT NER results report.
    spec = parse_spec({"name": "n", "job": {"data": ner_files}, "search": {"method": "random"}})
    assert (spec.search.metric, spec.search.mode) == ("val_f1_entity", "max")
    assert spec.job.training.monitor == "val_f1_entity"


def test_minimising_entity_f1_is_an_error_naming_both(ner_files: dict[str, str]) -> None:
    with pytest.raises(SpecError, match=r"search.mode: mode 'min' contradicts 'val_f1_entity'"):
        parse_spec(
            {
                "name": "n",
                "job": {"data": ner_files},
                "search": {"metric": "val_f1_entity", "mode": "min"},
            }
        )


def test_sweeps_validate_names_a_tag_outside_the_scheme_and_writes_nothing(
    tmp_path: Path,
    tiny_model_dir: str,
    ner_files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "dev.conll"
    bad.write_text("Paris\tB-LOC\nis\tO\n\nOslo\tB-LOC\nrocks\tX-LOC\n")
    spec = {
        "name": "bad",
        "storage_path": str(tmp_path / "results"),
        "job": {
            "model": {"name_or_path": tiny_model_dir},
            "data": {"train": ner_files["train"], "validation": str(bad)},
        },
        "search": {"method": "random", "metric": "val_f1_entity", "num_samples": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.validation: dev.conll line 5: tag 'X-LOC' is outside the IOB2 scheme" in err
    assert not (tmp_path / "results").exists()


def test_sweeps_validate_accepts_the_same_spec_with_good_data(
    tmp_path: Path, tiny_model_dir: str, ner_files: dict[str, str]
) -> None:
    """The positive control of the test above: only the bad tag makes it fail."""
    spec = {
        "name": "good",
        "storage_path": str(tmp_path / "results"),
        "job": {"model": {"name_or_path": tiny_model_dir}, "data": ner_files},
        "search": {"method": "random", "metric": "val_f1_entity", "num_samples": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    assert cli.main(["validate", str(path)]) == 0


def test_inside_tags_without_their_begin_are_kept_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train = tmp_path / "train.conll"
    train.write_text("Bob\tI-PER\nsays\tO\n\nin\tO\nOslo\tI-LOC\nnow\tO\n\nAl\tB-PER\n")
    dev = tmp_path / "dev.conll"
    dev.write_text("Al\tB-PER\nsays\tO\n")
    cfg = parse_config(
        {
            "data": {"train": str(train), "validation": str(dev)},
            "training": {"monitor": "val_f1_entity"},
        }
    )
    with caplog.at_level("WARNING"):
        dataset = read_dataset(cfg)
    assert "data.train: 2 I-/E- tags of train.conll continue no entity" in caplog.text
    assert dataset.splits["train"].tags[:2] == [["I-PER", "O"], ["O", "I-LOC", "O"]]


# --------------------------------------------------------------------------- runs


class Reports:
    def __init__(self, stop_at: int | None = None) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.stop_at = stop_at

    def __call__(self, metrics: dict[str, Any], checkpoint: ray.train.Checkpoint | None) -> None:
        self.metrics.append(metrics)
        assert checkpoint is not None
        self.paths.append(checkpoint.path)
        if metrics["step"] == self.stop_at:
            raise SystemExit(0)


def run(cfg: FinetuneConfig, storage: Path, name: str, reports: Reports) -> None:
    run_in_process(cfg, run_name=name, storage_path=str(storage), on_report=reports)


@pytest.mark.timeout(300)
def test_a_stopped_ner_run_resumes_to_the_weights_and_metrics_of_one_never_stopped(
    tiny_model_dir: str, ner_files: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(tiny_model_dir, ner_files)
    whole = Reports()
    run(cfg, tmp_path, "whole", whole)
    with pytest.raises(SystemExit):
        run(cfg, tmp_path, "stopped", Reports(stop_at=EVERY))
    resumed = Reports()
    run(cfg, tmp_path, "stopped", resumed)

    # It went on from its checkpoint: a restart from scratch would report step 10 again.
    assert [m["step"] for m in resumed.metrics] == [2 * EVERY]
    a = load_file(str(Path(whole.paths[-1]) / "model.safetensors"))
    b = load_file(str(Path(resumed.paths[-1]) / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("val_loss", "val_f1_entity", "test_f1_entity", "test_token_accuracy"):
        assert resumed.metrics[-1][key] == whole.metrics[-1][key], key


@pytest.mark.timeout(300)
def test_a_promoted_ner_model_tags_words_and_scores_what_seqeval_scores(
    tiny_model_dir: str,
    ner_files: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Windows as long as the tiny model's positions: every sentence in one window, so the
    # folder's plain transformers tagging (no windows) sees what evaluation saw.
    cfg = job(tiny_model_dir, ner_files, max_length=128, max_steps=5 * EVERY, eval_every=5 * EVERY)
    reports = Reports()
    run(cfg, tmp_path, "run", reports)
    metrics = reports.metrics[-1]
    best = BestTrial("t1", {}, metrics, Location.of(reports.paths[-1]))
    done = promote(
        best,
        cfg,
        str(tmp_path / "models"),
        sweep="s",
        objective=Objective.of("val_f1_entity"),
        spec_sha256="0" * 64,
    )
    folder = done.location.path

    assert cli.main(["verify", str(tmp_path / "models" / "s")]) == 0
    out = capsys.readouterr().out
    assert "'Alice Smith flew from Paris" in out and " -> Alice/" in out and "York/" in out

    model = AutoModelForTokenClassification.from_pretrained(folder)
    names = read_dataset(cfg).label_names
    assert model.config.id2label == dict(enumerate(names))

    # The reference: seqeval on the words as the saved folder tags them, sentence by sentence.
    tag = load_tagger(folder)
    dev = read_dataset(cfg).splits["validation"]
    predicted = [[t for _, t in tag(words)] for words in dev.tokens]
    report = classification_report(dev.tags, predicted, output_dict=True, zero_division=0)
    assert report["micro avg"]["f1-score"] > 0.3  # it learned entities: the check has teeth
    val = evaluate_folder(cfg, folder, "validation")
    assert val is not None
    assert val["val_f1_entity"] == pytest.approx(report["micro avg"]["f1-score"], abs=1e-12)
    assert val["val_precision_entity"] == pytest.approx(report["micro avg"]["precision"], abs=1e-12)
    assert val["val_recall_entity"] == pytest.approx(report["micro avg"]["recall"], abs=1e-12)
    assert val["val_token_accuracy"] == pytest.approx(accuracy_score(dev.tags, predicted))
    # And the run reported the same for those weights.
    for key, value in val.items():
        assert value == pytest.approx(metrics[key], rel=1e-5, abs=1e-6), key
