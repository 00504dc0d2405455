"""LoRA as a fine-tuning method (`model.method: lora`), through `peft`, for any task's model.

The backbone is frozen and low-rank adapters are trained next to the chosen layers; the new
head trains in full (peft's `modules_to_save`). A checkpoint holds both forms:

    <checkpoint>/            the merged model in its task's format (`from_pretrained`, timm)
    <checkpoint>/adapter/    adapter_config.json + adapter_model.safetensors (adapters + head)

The merged weights are what promotion and evaluation load; the adapter files are what a
resumed run loads (onto the pretrained backbone, as the run began), so its trainable tensors
and their optimizer state are exactly those saved. Keeping the adapter in a subfolder keeps
transformers' `from_pretrained(<folder>)` on the merged model (it would otherwise read an
`adapter_config.json` beside the weights as "load the base, then this adapter").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainables.config import LoraConfig, ModelConfig
from trainables.errors import ModelLoadError

ADAPTER_FOLDER = "adapter"


def has_adapter(folder: str) -> bool:
    """Whether `folder` is a checkpoint of a LoRA run."""
    return Path(folder, ADAPTER_FOLDER, "adapter_config.json").is_file()


def default_targets(model: torch.nn.Module, head: list[str]) -> list[str]:
    """Every linear layer and 1x1 convolution outside the head (for models peft has no
    default for, such as timm's convolutional backbones)."""
    names = []
    for name, module in model.named_modules():
        if any(name == h or name.startswith(f"{h}.") for h in head):
            continue
        if isinstance(module, torch.nn.Linear) or (
            isinstance(module, torch.nn.Conv2d)
            and module.kernel_size == (1, 1)
            and module.groups == 1
        ):
            names.append(name)
    return names


def add_lora(
    model: torch.nn.Module, cfg: LoraConfig, head: list[str], task_type: str | None
) -> Any:
    """`model` with its weights frozen and LoRA adapters added; the `head` modules train.

    Args:
        model: The pretrained model with its fresh head.
        cfg: Rank, alpha, dropout, target modules.
        head: Names of the head's modules (trained in full, saved with the adapters).
        task_type: peft's task type (`SEQ_CLS` for transformers text classifiers), or None
            for a plain module (a vision model): then `target_modules` default to every
            linear and 1x1 convolution of the backbone.

    Raises:
        ModelLoadError: naming `model.lora.target_modules` when peft cannot place adapters.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets: list[str] | None = list(cfg.target_modules) if cfg.target_modules else None
    if targets is None and task_type is None:
        targets = default_targets(model, head)
    try:
        return get_peft_model(
            model,
            PeftLoraConfig(
                r=cfg.r,
                lora_alpha=cfg.alpha,
                lora_dropout=cfg.dropout,
                target_modules=targets,
                modules_to_save=head,
                task_type=task_type,
            ),
        )
    except ValueError as exc:
        raise ModelLoadError(f"model.lora.target_modules: {exc}") from None


def load_lora(model: torch.nn.Module, folder: str) -> Any:
    """`model` (the pretrained backbone with a fresh head) with a checkpoint's adapters and
    head loaded, trainable."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(Path(folder, ADAPTER_FOLDER)), is_trainable=True)


def save_lora(model: Any, folder: Path, save_merged: Callable[[Any, Path], None]) -> None:
    """Writes the adapter files under `folder/adapter` and the merged model into `folder`
    (with `save_merged(merged_model, folder)`, the task's own save)."""
    model.save_pretrained(str(folder / ADAPTER_FOLDER))
    merged = copy.deepcopy(model).merge_and_unload()
    save_merged(merged, folder)


def save_by_method(
    model: Any, folder: Path, method: str, save_plain: Callable[[Any, Path], None]
) -> None:
    """Saves `model` into `folder` with its task's own save, `save_plain(model, folder)`; a LoRA
    model merged, with its adapter files in `adapter/` (`save_lora`)."""
    if method == "lora":
        save_lora(model, folder, save_plain)
    else:
        save_plain(model, folder)


def with_processor(processor: Any) -> Callable[[Any, Path], None]:
    """A plain save: `save_pretrained` of the model and of its tokenizer or processor."""

    def save(model: Any, folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    return save


def build_by_method(
    model: ModelConfig,
    job_model: ModelConfig,
    build: Callable[[ModelConfig], torch.nn.Module],
    task_type: str,
) -> torch.nn.Module:
    """A transformers model `build` makes from `model` (with its effective freeze), fine-tuned
    by `model.method`: a LoRA checkpoint folder holds adapters only, so they go back onto the
    job's backbone (`job_model`); a fresh LoRA model gets adapters, its new head trained whole
    (every child that is not the backbone, `base_model_prefix`, and has parameters)."""
    frozen = {"freeze": model.effective_freeze}
    if model.method == "lora" and has_adapter(model.name_or_path):
        return load_lora(build(job_model.model_copy(update=frozen)), model.name_or_path)
    built = build(model.model_copy(update=frozen))
    if model.method != "lora":
        return built
    prefix = built.base_model_prefix
    head = [
        n
        for n, m in built.named_children()
        if n != prefix and next(m.parameters(), None) is not None
    ]
    return add_lora(built, model.lora, head, task_type=task_type)
