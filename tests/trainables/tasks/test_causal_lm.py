"""Causal-LM supervised fine-tuning (`task: causal_lm`) without Ray, on tiny Llama and GPT-2
models built from a config (random weights) with a real byte-level BPE tokenizer beside them.

Expected losses are computed here from the raw strings (our own tokenization of prompt and
completion, each example run alone and unpadded through the model), not from the task's
batches, so a task that learned prompt or padding tokens, or let packed examples attend to
each other, gives a different figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from trainables.config import FinetuneConfig
from trainables.errors import DataError, ModelLoadError
from trainables.reporting import natural_mode
from trainables.tasks import prepare_task, read_dataset
from trainables.tasks.causal_lm import CausalLmTask, generate, load_causal_lm
from trainables.tiny_lm import CHAT_TEMPLATE, build_tiny_causal_lm, corpus

PAIRS = [
    ("what is the sea", " the sea is calm and blue"),
    ("who sat on the mat", " a cat"),
    ("how many ships sail north past the old harbour light today", " two"),
    ("where", " the river runs past the stone tree while the moon is bright"),
    ("one two three", " four five"),
]

CHATS = [
    [
        {"role": "system", "content": "answer briefly"},
        {"role": "user", "content": "what is the sea"},
        {"role": "assistant", "content": "calm and blue"},
        {"role": "user", "content": "and the sun"},
        {"role": "assistant", "content": "bright"},
    ],
    [
        {"role": "user", "content": "who sat on the mat"},
        {"role": "assistant", "content": "a cat"},
    ],
]


@pytest.fixture(scope="session")
def lm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny GPT-2 (tokenizer without a chat template) and a tiny Llama (with one); neither
    tokenizer has a pad token."""
    root = tmp_path_factory.mktemp("tiny-lm")
    return {
        "gpt2": build_tiny_causal_lm(root / "gpt2", "gpt2"),
        "llama": build_tiny_causal_lm(root / "llama", "llama", CHAT_TEMPLATE),
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def job(model: str, train: str, **data: Any) -> FinetuneConfig:
    return FinetuneConfig.model_validate(
        {
            "task": "causal_lm",
            "model": {"name_or_path": model},
            "data": {"train": train, "validation": train, "max_length": 64, **data},
        }
    )


def pair_files(tmp_path: Path) -> str:
    return write_jsonl(tmp_path / "pairs.jsonl", [{"p": p, "c": c} for p, c in PAIRS])


def own_loss(model: Any, prompt: list[int], completion: list[int]) -> tuple[float, int]:
    """(summed cross-entropy of `completion` after `prompt`, its token count): the example
    alone, unpadded."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    scores = logits[len(prompt) - 1 : -1]
    return float(F.cross_entropy(scores, torch.tensor(completion), reduction="sum")), len(
        completion
    )


def test_loss_is_on_completion_tokens_only_not_prompt_or_padding(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(lm_dirs["gpt2"], pair_files(tmp_path), prompt_column="p", completion_column="c")
    task = prepare_task(cfg)
    tokenizer = task.tokenizer  # type: ignore[attr-defined]
    assert tokenizer.pad_token_id is None  # padded with EOS, which must not be learned there
    model = task.build_model(cfg.model).eval()
    rows = list(range(task.splits["validation"]))
    batch = task.batch("validation", rows, train=False)
    assert bool((batch["attention_mask"] == 0).any())  # the batch has padding
    labels = batch.pop("labels")
    with torch.no_grad():
        loss = float(task.loss(task.logits(model, batch).float(), labels))

    total, count = 0.0, 0
    eos = tokenizer.eos_token_id
    for prompt, completion in PAIRS:
        ids_p = tokenizer(prompt)["input_ids"]
        ids_c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos]
        s, n = own_loss(model, ids_p, ids_c)
        total, count = total + s, count + n
    assert loss == pytest.approx(total / count, rel=1e-5)


def test_packed_row_loss_is_the_sum_of_its_examples_own_losses(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(
        lm_dirs["llama"],
        pair_files(tmp_path),
        prompt_column="p",
        completion_column="c",
        packing=True,
    )
    task = prepare_task(cfg)
    assert task.splits["validation"] < len(PAIRS)  # several examples share a row
    model = task.build_model(cfg.model).eval()
    batch = task.batch("validation", list(range(task.splits["validation"])), train=False)
    labels = batch.pop("labels")
    state = task.metric_state(torch.device("cpu"))
    with torch.no_grad():
        state.add(task.logits(model, batch).float(), labels)
    packed_sum = float(state.sums[0])  # type: ignore[attr-defined]

    tokenizer = task.tokenizer  # type: ignore[attr-defined]
    expected = sum(
        own_loss(
            model,
            tokenizer(p)["input_ids"],
            tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
        )[0]
        for p, c in PAIRS
    )
    assert packed_sum == pytest.approx(expected, rel=1e-5)

    # Positive control: the same rows under a plain causal mask (an all-ones attention mask
    # turns off the packed-sequence masks) let examples attend to the ones before them.
    crossing = dict(batch, attention_mask=torch.ones_like(batch["input_ids"]))
    control = task.metric_state(torch.device("cpu"))
    with torch.no_grad():
        control.add(task.logits(model, crossing).float(), labels)
    assert abs(float(control.sums[0]) - expected) > 1e-3 * expected  # type: ignore[attr-defined]


def test_packed_plain_texts_learn_no_token_across_an_example_boundary(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    texts = [c.strip() for _, c in PAIRS]
    train = write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in texts])
    task = prepare_task(job(lm_dirs["llama"], train, packing=True))
    assert task.splits["validation"] < len(texts)
    model = task.build_model(task.job_model).eval()  # type: ignore[attr-defined]
    batch = task.batch("validation", list(range(task.splits["validation"])), train=False)
    labels = batch.pop("labels")
    state = task.metric_state(torch.device("cpu"))
    with torch.no_grad():
        state.add(task.logits(model, batch).float(), labels)

    tokenizer = task.tokenizer  # type: ignore[attr-defined]
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        s, n = own_loss(model, ids[:1], ids[1:])  # every token after the first is learned
        total, count = total + s, count + n
    assert float(state.sums[1]) == count  # type: ignore[attr-defined]
    assert float(state.sums[0]) == pytest.approx(total, rel=1e-5)  # type: ignore[attr-defined]


def test_packing_is_refused_for_a_model_whose_attention_crosses_examples(
    lm_dirs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers.masking_utils

    cfg = job(
        lm_dirs["llama"],
        pair_files(tmp_path),
        prompt_column="p",
        completion_column="c",
        packing=True,
    )
    task = prepare_task(cfg)
    task.build_model(cfg.model)  # positive control: this model keeps them apart
    # A backend that does not read restarting positions as boundaries: a plain causal mask.
    monkeypatch.setattr(transformers.masking_utils, "find_packed_sequence_indices", lambda p: None)
    with pytest.raises(ModelLoadError, match=r"data\.packing: LlamaForCausalLM attends across"):
        task.build_model(cfg.model)


def test_chat_rows_learn_the_assistant_turns_with_their_end_token_only(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    task = prepare_task(job(lm_dirs["llama"], train, messages_column="messages"))
    tokenizer = task.tokenizer  # type: ignore[attr-defined]
    learned = []
    for row in range(task.splits["validation"]):
        labels = task.batch("validation", [row], train=False)["labels"][0].tolist()
        runs: list[list[int]] = [[]]
        for label in labels:
            if label == -100:
                if runs[-1]:
                    runs.append([])
            else:
                runs[-1].append(label)
        learned.append([tokenizer.decode(run) for run in runs if run])
    expected = [[t["content"] + "</s>" for t in m if t["role"] == "assistant"] for m in CHATS]
    assert learned == expected


def test_a_role_the_template_does_not_know_is_named_by_file_row_and_field(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    bad = [*CHATS[1][:1], {"role": "tool", "content": "42"}, CHATS[1][1]]
    train = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHATS[0]}, {"messages": bad}])
    with pytest.raises(DataError, match=r"data\.train: .*chat\.jsonl row 2: .*'tool'"):
        read_dataset(job(lm_dirs["llama"], train, messages_column="messages"))


def test_a_role_a_template_leaves_out_silently_is_named(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    # CHAT_TEMPLATE, but a role it does not know is skipped instead of raised.
    quiet = (
        "{% for m in messages %}{% if m['role'] in ['system', 'user', 'assistant'] %}"
        "<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    bad = [*CHATS[1][:1], {"role": "tool", "content": "forty two"}, CHATS[1][1]]
    train = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHATS[1]}, {"messages": bad}])
    cfg = job(lm_dirs["gpt2"], train, messages_column="messages", chat_template=quiet)
    with pytest.raises(DataError, match=r"chat\.jsonl row 2: turn 1 \(role 'tool'\) is left out"):
        read_dataset(cfg)


def test_messages_without_a_chat_template_name_the_field(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    with pytest.raises(DataError, match=r"data\.messages_column: .*no chat template"):
        read_dataset(job(lm_dirs["gpt2"], train, messages_column="messages"))


def test_a_given_chat_template_renders_for_a_tokenizer_without_one(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    cfg = job(lm_dirs["gpt2"], train, messages_column="messages", chat_template=CHAT_TEMPLATE)
    task = prepare_task(cfg)
    assert task.splits["train"] == len(CHATS)


def test_a_messages_cell_that_is_not_a_list_of_turns_is_named(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    bad = [{"role": "user"}]  # no content
    train = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHATS[0]}, {"messages": bad}])
    with pytest.raises(DataError, match=r"data\.messages_column: .*chat\.jsonl row 2: turn 0 "):
        read_dataset(job(lm_dirs["llama"], train, messages_column="messages"))


def test_an_empty_completion_is_named(lm_dirs: dict[str, str], tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "p.jsonl", [{"p": "what", "c": " x"}, {"p": "who", "c": " "}])
    with pytest.raises(DataError, match=r"data\.completion_column: .*p\.jsonl row 2: an empty"):
        read_dataset(job(lm_dirs["gpt2"], train, prompt_column="p", completion_column="c"))


def test_rows_whose_prompt_fills_max_length_are_dropped_and_counted(
    lm_dirs: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long = " ".join(corpus(8, seed=3))
    rows = [{"p": p, "c": c} for p, c in PAIRS] + [{"p": long, "c": " two"}]
    train = write_jsonl(tmp_path / "p.jsonl", rows)
    task = prepare_task(job(lm_dirs["gpt2"], train, prompt_column="p", completion_column="c"))
    assert task.splits["train"] == len(PAIRS)
    assert "1 of 6 rows dropped" in caplog.text and "p.jsonl row 6" in caplog.text


def test_every_prompt_filling_max_length_is_an_error(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    long = " ".join(corpus(8, seed=3))
    train = write_jsonl(tmp_path / "p.jsonl", [{"p": long, "c": " two"}])
    with pytest.raises(DataError, match=r"data\.train: every one of the 1 rows"):
        read_dataset(job(lm_dirs["gpt2"], train, prompt_column="p", completion_column="c"))


def test_method_head_is_refused_for_a_causal_lm(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a causal LM has none"):
        FinetuneConfig.model_validate(
            {
                "task": "causal_lm",
                "model": {"name_or_path": str(tmp_path), "method": "head"},
                "data": {"train": str(tmp_path / "t.jsonl")},
            }
        )


def test_the_embedded_sentence_encoder_is_refused_for_a_causal_lm(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.name_or_path: task: causal_lm .* not one"):
        FinetuneConfig.model_validate(
            {"task": "causal_lm", "data": {"train": str(tmp_path / "t.jsonl")}}
        )


def test_perplexity_is_minimised() -> None:
    assert natural_mode("val_perplexity") == "min"


def test_validation_metrics_are_the_mean_over_learned_tokens_in_any_batching(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    cfg = job(lm_dirs["gpt2"], pair_files(tmp_path), prompt_column="p", completion_column="c")
    task = prepare_task(cfg)
    model = task.build_model(cfg.model).eval()
    rows = list(range(task.splits["validation"]))

    def result(batches: list[list[int]]) -> dict[str, float]:
        state = task.metric_state(torch.device("cpu"))
        for chunk in batches:
            batch = task.batch("validation", chunk, train=False)
            labels = batch.pop("labels")
            with torch.no_grad():
                state.add(task.logits(model, batch).float(), labels)
        return state.result("val_")

    whole, one_by_one = result([rows]), result([[r] for r in rows])
    # Not the mean of per-row means: rows of different lengths weigh by their tokens.
    assert whole["val_loss"] == pytest.approx(one_by_one["val_loss"], rel=1e-6)
    assert whole["val_perplexity"] == pytest.approx(math.exp(whole["val_loss"]), rel=1e-9)


def test_lora_adapter_and_merged_model_generate_the_same_tokens(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    from peft import PeftModel

    cfg = FinetuneConfig.model_validate(
        {
            "task": "causal_lm",
            "model": {"name_or_path": lm_dirs["llama"], "method": "lora"},
            "data": {"train": pair_files(tmp_path), "prompt_column": "p", "completion_column": "c"},
        }
    )
    task = prepare_task(cfg)
    assert isinstance(task, CausalLmTask)
    model = task.build_model(cfg.model)
    # LoRA's B starts at zero (the adapter changes nothing): give it weights that matter.
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 2.0)
    folder = tmp_path / "saved"
    task.save(model, folder)

    tokenizer = task.tokenizer
    merged = load_causal_lm(str(folder)).eval()
    adapter = PeftModel.from_pretrained(
        load_causal_lm(lm_dirs["llama"]), str(folder / "adapter")
    ).eval()
    base = load_causal_lm(lm_dirs["llama"]).eval()
    prompt = "what is the sea"
    merged_tokens = generate(merged, tokenizer, prompt, 12)
    assert generate(adapter, tokenizer, prompt, 12) == merged_tokens
    # Positive control: without the adapter, the tokens differ.
    assert generate(base, tokenizer, prompt, 12) != merged_tokens


@pytest.mark.timeout(120)
def test_a_lora_packed_run_stopped_at_a_report_resumes_to_the_weights_of_one_never_stopped(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    from tests.trainables.test_in_process import Reports, run, weights
    from trainables.config import parse_config

    rows = [{"p": " ".join(s.split()[:2]), "c": " " + " ".join(s.split()[2:])} for s in corpus(48)]
    cfg = parse_config(
        {
            "task": "causal_lm",
            "model": {"name_or_path": lm_dirs["llama"], "method": "lora"},
            "data": {
                "train": write_jsonl(tmp_path / "sft.jsonl", rows),
                "prompt_column": "p",
                "completion_column": "c",
                "max_length": 64,
                "packing": True,
            },
            "optimizer": {"lr": 3e-3},
            "training": {"batch_size": 4, "max_steps": 9, "eval_every": 3, "seed": 3},
        }
    )
    whole = Reports()
    run(cfg, tmp_path, "whole", whole)
    stopped = Reports(stop_at=6)
    with pytest.raises(SystemExit):
        run(cfg, tmp_path, "stopped", stopped)
    resumed = Reports()
    run(cfg, tmp_path, "stopped", resumed)

    assert (stopped.steps, resumed.steps) == ([3, 6], [9])
    mine, theirs = weights(str(resumed.paths[-1])), weights(str(whole.paths[-1]))
    assert mine.keys() == theirs.keys()
    assert all((mine[k] == theirs[k]).all() for k in mine)


def test_verify_continues_the_smoke_prompt_greedily_as_transformers_does(
    lm_dirs: dict[str, str],
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainables.tasks.saved import kind_of, load_classifier, smoke_input

    folder = lm_dirs["llama"]
    assert kind_of(folder) == "transformers-causal-lm"
    answer = load_classifier(folder)(smoke_input(folder))

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = f"<|user|>{smoke_input(folder)}</s><|assistant|>"  # CHAT_TEMPLATE, by hand
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=20,
        do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    assert answer == tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_lora_with_gradient_checkpointing_gets_the_same_adapter_gradients(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    def adapter_grads(checkpointing: bool) -> dict[str, torch.Tensor | None]:
        cfg = FinetuneConfig.model_validate(
            {
                "task": "causal_lm",
                "model": {"name_or_path": lm_dirs["llama"], "method": "lora"},
                "data": {
                    "train": pair_files(tmp_path),
                    "prompt_column": "p",
                    "completion_column": "c",
                },
                "training": {"gradient_checkpointing": checkpointing},
            }
        )
        task = prepare_task(cfg)
        torch.manual_seed(0)
        model: Any = task.build_model(cfg.model).train()
        assert model.base_model.model.is_gradient_checkpointing == checkpointing
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.5)
        batch = task.batch("train", list(range(task.splits["train"])), train=True)
        labels = batch.pop("labels")
        task.loss(task.logits(model, batch).float(), labels).backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain, checkpointed = adapter_grads(False), adapter_grads(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        other = checkpointed[name]
        assert grad is not None and other is not None, name
        assert torch.allclose(grad, other, atol=1e-6), name


def test_a_saved_lora_folder_scores_on_test_what_the_live_adapter_model_scores(
    lm_dirs: dict[str, str], tmp_path: Path
) -> None:
    from trainables.evaluation import evaluate_folder

    pairs = pair_files(tmp_path)
    cfg = FinetuneConfig.model_validate(
        {
            "task": "causal_lm",
            "model": {"name_or_path": lm_dirs["gpt2"], "method": "lora"},
            "data": {
                "train": pairs,
                "test": pairs,
                "prompt_column": "p",
                "completion_column": "c",
                "packing": True,
            },
        }
    )
    task = prepare_task(cfg)
    model: Any = task.build_model(cfg.model).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 1.0)
    state = task.metric_state(torch.device("cpu"))
    for rows in task.eval_order("test", list(range(task.splits["test"])), 2):
        batch = task.batch("test", rows, train=False)
        labels = batch.pop("labels")
        with torch.no_grad():
            state.add(task.logits(model, batch).float(), labels)
    live = state.result("test_")
    task.save(model, tmp_path / "saved")

    saved = evaluate_folder(cfg, str(tmp_path / "saved"), "test")
    assert saved is not None
    assert saved["test_loss"] == pytest.approx(live["test_loss"], rel=1e-5)
    assert saved["test_perplexity"] == pytest.approx(live["test_perplexity"], rel=1e-5)
