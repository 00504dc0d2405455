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


def build_tiny_vision(folder: str | Path, image_size: int = 32) -> str:
    """Saves timm's tiny `test_efficientnet` (random weights, ~0.1M parameters) under
    `folder` in timm's save format, for `image_size` inputs."""
    import torch

    from trainables.tasks.vision_models import import_timm

    timm = import_timm()
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=2)
    model.pretrained_cfg = {
        **dict(model.pretrained_cfg),
        "input_size": (3, image_size, image_size),
        "crop_pct": 0.875,
    }
    save_for_hf(model, str(folder), safe_serialization=True)
    return str(folder)
