"""A tiny randomly initialised BERT, built from a config: for tests, benchmarks and smoke runs.

It trains in milliseconds per step on a CPU and needs no download: the tokenizer is the
embedded MiniLM's.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_bert(folder: str | Path, hidden: int = 32, layers: int = 2) -> str:
    """Saves a `hidden`-wide, `layers`-deep random BERT and its tokenizer under `folder`."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from trainables.config import EMBEDDED_MODEL
    from trainables.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_MODEL))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
