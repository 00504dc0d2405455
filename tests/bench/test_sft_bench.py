"""`bench/sft.py` compares like for like: on the same first batch TRL's `SFTTrainer` and the
loop compute the same loss (the same tokens learned, the same attention inside packed
examples), and both count the same real and supervised tokens.

Each equality has its control: TRL supervising the prompt too, or TRL's packed rows collated
so that attention crosses examples, fails the check; and the token counters agree with counts
taken from the tokenizer (the rows' own tokens) and by hand, not with each other only.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from bench.sft import (
    TOLERANCE,
    Work,
    check,
    check_same_work,
    loop_work,
    supervised_tokens,
    trl_work,
)
from trainables.tasks.causal_lm import CausalLmTask
from trainables.tiny_lm import build_tiny_causal_lm, corpus


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny Llama and 40 prompt/completion rows of its tokenizer's words (the bench's form:
    the prompt ends with a newline), 8 of them for validation."""
    folder = tmp_path_factory.mktemp("sft-bench")
    model = build_tiny_causal_lm(folder / "model", "llama", seed=0)
    sentences = corpus(80, seed=3)
    rows = [
        {"prompt": sentences[2 * i] + "\n", "completion": sentences[2 * i + 1]} for i in range(40)
    ]
    train, dev = folder / "train.jsonl", folder / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    return {"train": str(train), "dev": str(dev), "model": model, "rows": rows[:32]}


@pytest.fixture(scope="module")
def checked(job: dict[str, Any]) -> dict[bool, dict[str, Any]]:
    """The bench's first-batch check, unpacked (False) and packed (True), run once each."""
    return {
        packing: check(job["train"], job["dev"], job["model"], packing) for packing in (False, True)
    }


def tokenizer_counts(job: dict[str, Any], examples: list[int]) -> tuple[int, int]:
    """(real, supervised) tokens of the train file's `examples`, from the tokenizer alone:
    prompt, completion and EOS; the completion and EOS learned."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    real = supervised = 0
    for e in examples:
        prompt = tokenizer(job["rows"][e]["prompt"])["input_ids"]
        completion = tokenizer(job["rows"][e]["completion"], add_special_tokens=False)
        learned = len(completion["input_ids"]) + 1
        real += len(prompt) + learned
        supervised += learned
    return real, supervised


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_trl_and_the_loop_have_the_same_first_batch_loss(
    checked: dict[bool, dict[str, Any]], packing: bool
) -> None:
    got = checked[packing]
    assert abs(got["loop_loss"] - got["trl_loss"]) <= TOLERANCE
    # Packed, the batch holds more examples than rows (else packing was not exercised).
    assert len(got["examples"]) > 8 if packing else len(got["examples"]) == 8


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_both_sides_count_the_rows_own_tokens(
    job: dict[str, Any], checked: dict[bool, dict[str, Any]], packing: bool
) -> None:
    got = checked[packing]
    real, supervised = tokenizer_counts(job, got["examples"])
    for side in ("loop_work", "trl_work"):
        assert (got[side].examples, got[side].real, got[side].supervised) == (
            len(got["examples"]),
            real,
            supervised,
        )


def test_trl_supervising_the_prompt_fails_the_check_positive_control(job: dict[str, Any]) -> None:
    with pytest.raises(SystemExit, match="differ by more than"):
        check(job["train"], job["dev"], job["model"], False, completion_only_loss=False)


def test_attention_across_packed_examples_fails_the_check_positive_control(
    job: dict[str, Any],
) -> None:
    with pytest.raises(SystemExit, match="differ by more than"):
        check(job["train"], job["dev"], job["model"], True, cross_examples=True)


def test_runs_with_different_epoch_tokens_stop_the_bench() -> None:
    run = {"epoch_real_tokens": 100, "epoch_supervised_tokens": 40}
    check_same_work({"a": [run], "b": [dict(run)]})
    with pytest.raises(SystemExit, match="epoch_real_tokens"):
        check_same_work({"a": [run], "b": [{**run, "epoch_real_tokens": 101}]})
    with pytest.raises(SystemExit, match="epoch_supervised_tokens"):
        check_same_work({"a": [run], "b": [{**run, "epoch_supervised_tokens": 39}]})


def test_counters_on_hand_made_batches() -> None:
    # The loop: 3 examples of 4, 2 and 3 tokens (prompts of 2, 1 and 1), packed as [4 + 2]
    # and [3]; its own batch builder pads to 6.
    ids = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    labels = [[-100, -100, 7, 8, -100, 10], [-100, 12, 13]]
    positions = [[0, 1, 2, 3, 0, 1], [0, 1, 2]]
    task = SimpleNamespace(
        ids={"train": ids},
        labels={"train": labels},
        positions={"train": positions},
        packing=True,
        pad_id=0,
    )
    batch = CausalLmTask.batch(task, "train", [0, 1], train=True)  # type: ignore[arg-type]
    # By hand: 9 real tokens in a 2 x 6 batch; learned after the shift: 7, 8, 10 and 12, 13.
    assert loop_work(task, "train", [0, 1], batch) == Work(3, 9, 5, 12)
    task.packing = False
    assert loop_work(task, "train", [0, 1], batch).examples == 2

    # TRL: two padded rows of 3 and 5 tokens; one padding-free row of both.
    features = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
        {"input_ids": [4, 5, 6, 7, 8], "labels": [-100, -100, 6, 7, 8]},
    ]
    padded = {"input_ids": torch.zeros(2, 5), "labels": torch.full((2, 5), -100)}
    padded["labels"][0, :3] = torch.tensor([-100, 2, 3])
    padded["labels"][1] = torch.tensor([-100, -100, 6, 7, 8])
    assert trl_work(features, padded) == Work(2, 8, 5, 10)
    packed = [{**features[0], "seq_lengths": [1, 2]}]
    flat = {"input_ids": torch.zeros(1, 3), "labels": torch.tensor([[-100, 2, 3]])}
    assert trl_work(packed, flat) == Work(2, 3, 2, 3)
    assert supervised_tokens(np.array([[1, -100, 2]])) == 1
