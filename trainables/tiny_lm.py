"""Tiny causal language models for tests and smoke runs: a Llama- or GPT-2-architecture model
built from a config (random weights) with a real tokenizer saved beside it (a byte-level BPE
trained here on a few hundred strings, with BOS / EOS and, optionally, a chat template).

No pretrained generative model ships with a package this project installs; these exercise
every code path of `task: causal_lm` without the Hub.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: A Jinja chat template in the common shape: each turn `<|role|>content</s>`, an unknown role
#: raised as an error, `<|assistant|>` as the generation prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + m['role']) }}"
    "{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

WORDS = [
    "the",
    "sea",
    "is",
    "calm",
    "and",
    "blue",
    "today",
    "while",
    "ships",
    "sail",
    "north",
    "past",
    "the",
    "old",
    "harbour",
    "light",
    "question",
    "answer",
    "what",
    "where",
    "when",
    "who",
    "why",
    "how",
    "many",
    "one",
    "two",
    "three",
    "four",
    "five",
    "red",
    "green",
    "a",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "dog",
    "ran",
    "fast",
    "slow",
    "bright",
    "dark",
    "sun",
    "moon",
    "star",
    "river",
    "stone",
    "tree",
]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """`n` short random sentences over a small vocabulary."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def train_tokenizer(chat_template: str | None = None, pad: bool = False) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` (about 400 tokens) with `<s>` / `</s>`, the
    chat markers as ordinary text, and no pad token unless `pad`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>"] + (["<pad>"] if pad else [])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus() + ["<|user|> <|assistant|> <|system|>"] * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>" if pad else None,
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_causal_lm(
    folder: Path, architecture: str = "llama", chat_template: str | None = None, seed: int = 0
) -> str:
    """Saves a 2-layer, 32-wide `llama` or `gpt2` causal LM (random weights, seeded, drawn
    with a standard deviation of 0.2) and its tokenizer into `folder`; returns the folder."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tokenizer = train_tokenizer(chat_template)
    ids = {
        # Wider than the usual 0.02: attention and outputs vary enough with the context that
        # a mistake in what attends to what shows in the loss.
        "initializer_range": 0.2,
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config: Any
    if architecture == "llama":
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **ids,
        )
    elif architecture == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512, **ids)
    else:
        raise ValueError(f"architecture: {architecture!r}; known: llama, gpt2")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


#: Where `smoke_model` keeps the tiny Llama (the version changes when what it builds does).
SMOKE_MODEL = Path(tempfile.gettempdir()) / "finetune-sweeps-smoke" / "tiny-llama-1"


def smoke_model(folder: Path = SMOKE_MODEL) -> str:
    """The tiny Llama (random weights, seeded; tokenizer with `CHAT_TEMPLATE`) that
    `sweeps run --smoke-test` puts in place of a causal LM that is not on this machine: built
    into `folder` once, then reused (every build is the same). Returns the folder.

    Built in a folder beside it and renamed into place, so a process never reads half of it
    and two processes building at once leave one whole copy.
    """
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    build_tiny_causal_lm(staging, "llama", CHAT_TEMPLATE)
    try:
        os.rename(staging, folder)
    except OSError:  # another process renamed its copy first
        shutil.rmtree(staging, ignore_errors=True)
    return str(folder)
