"""The NER metrics' reduction over ranks without Ray: two gloo processes each evaluate their
shard of the same weights, and what they report equals one process evaluating the whole split.
A quick check of `TokenMetrics.result`'s sums (the Ray Train run is in
tests/integration/test_ner_ddp.py)."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests import gloo_ranks
from tests.ner_data import write_conll
from trainables.config import FinetuneConfig, parse_config
from trainables.loop import task_eval_iter
from trainables.metrics import evaluate
from trainables.tasks.token_classification import prepare

SPLIT = "validation"


def job(model_dir: str, folder: str) -> FinetuneConfig:
    return parse_config(
        {
            "model": {"name_or_path": model_dir},
            "data": {
                "train": str(Path(folder, "train.conll")),
                "validation": str(Path(folder, "dev.conll")),
                "max_length": 24,
            },
            "training": {"batch_size": 3, "monitor": "val_f1_entity"},
        }
    )


def evaluate_shard(cfg: FinetuneConfig, rank: int, world: int) -> dict[str, float]:
    torch.set_num_threads(1)
    task = prepare(cfg)
    model = task.build_model(cfg.model)
    cpu = torch.device("cpu")
    batches = task_eval_iter(task, SPLIT, cfg.training.batch_size, rank, world)
    state = task.metric_state(cpu)
    return evaluate(model, batches, state, cpu, contextlib.nullcontext, "val_", task.logits)


def rank_main(rank: int, world: int, port: int, model_dir: str, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        metrics = evaluate_shard(job(model_dir, folder), rank, world)
        Path(folder, f"rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tagger_dir(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny BERT with a token-classification head (seeded random weights), saved, so every
    process loads the same head."""
    from transformers import AutoModelForTokenClassification

    folder = tmp_path_factory.mktemp("tagger")
    torch.manual_seed(11)
    names = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_model_dir,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    model.save_pretrained(folder)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return str(folder)


@pytest.mark.timeout(120)
def test_two_gloo_ranks_report_the_whole_splits_entity_metrics(
    tagger_dir: str, tmp_path: Path
) -> None:
    write_conll(tmp_path / "train.conll", 20, seed=1)
    # 41 sentences (shards of 21 and 20), every 5th long enough for several windows.
    write_conll(tmp_path / "dev.conll", 41, seed=2, long_every=5)
    whole = evaluate_shard(job(tagger_dir, str(tmp_path)), 0, 1)
    # Random weights predict entities, a few of them right: the counts are not all zero.
    assert 0.0 < whole["val_f1_entity"] < 1.0

    gloo_ranks.run_ranks(rank_main, (2, free_port(), tagger_dir, str(tmp_path)))
    for rank in (0, 1):
        reported = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name in ("f1_entity", "precision_entity", "recall_entity", "token_accuracy"):
            assert reported["val_" + name] == whole["val_" + name], (rank, name)
        # float32 losses of differently padded batches: equal to rounding only.
        assert reported["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-6)
