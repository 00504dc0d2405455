"""`model.method` without Ray: what trains under full / head / lora, and LoRA's save format
(the merged model and the adapter files give the same logits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from trainables.config import FinetuneConfig, parse_config
from trainables.errors import ConfigError
from trainables.optim import build_optimizer
from trainables.tasks import Task, prepare_task


def text_job(model_dir: str, files: dict[str, str], **model: Any) -> FinetuneConfig:
    return parse_config(
        {
            "model": {"name_or_path": model_dir, **model},
            "data": {
                "train": files["train"],
                "validation": files["validation"],
                "text_column": "sentence",
                "label_column": "sentiment",
                "max_length": 32,
            },
        }
    )


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_steps(task: Task, model: torch.nn.Module, cfg: FinetuneConfig, steps: int) -> None:
    optimizer = build_optimizer(model, cfg.optimizer.model_copy(update={"lr": 1e-2}))
    for step in range(steps):
        batch = task.batch("train", list(range(step * 8, step * 8 + 8)), train=True)
        labels = batch.pop("labels")
        F.cross_entropy(task.logits(model, batch), labels).backward()
        optimizer.step()
        optimizer.zero_grad()


def test_head_trains_only_the_new_head(
    tiny_model_dir: str, separable_files: dict[str, str]
) -> None:
    cfg = text_job(tiny_model_dir, separable_files, method="head")
    model = prepare_task(cfg).build_model(cfg.model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "classifier.weight",
        "classifier.bias",
    }


def test_lora_trains_adapters_and_the_head_a_small_share_of_full(
    tiny_model_dir: str, separable_files: dict[str, str]
) -> None:
    full_cfg = text_job(tiny_model_dir, separable_files)
    lora_cfg = text_job(tiny_model_dir, separable_files, method="lora", lora={"r": 2})
    task = prepare_task(full_cfg)
    full, lora = task.build_model(full_cfg.model), task.build_model(lora_cfg.model)
    names = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in names) and any("classifier" in n for n in names)
    assert not any("lora" not in n and "classifier" not in n for n in names), names
    assert trainable(lora) < 0.2 * trainable(full)


def test_lora_with_a_layer_freeze_is_refused(
    tiny_model_dir: str, separable_files: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match="model.freeze: 'layers' goes with method: full"):
        text_job(tiny_model_dir, separable_files, method="lora", freeze="layers", freeze_layers=1)


def test_the_merged_model_and_the_adapter_files_give_the_same_logits(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)  # the fresh head's initialisation
    cfg = text_job(tiny_model_dir, separable_files, method="lora", lora={"r": 4, "alpha": 8})
    task = prepare_task(cfg)
    model = task.build_model(cfg.model).eval()  # no dropout: the steps below are the same
    train_steps(task, model, cfg, steps=5)  # adapters start at zero: make them matter
    model.eval()
    task.save(model, tmp_path)

    batch = task.batch("validation", list(range(16)), train=False)
    batch.pop("labels")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    # A user keeping base and adapter apart: the pretrained backbone, then the adapter files.
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    adapted = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        trained = model(**batch).logits
        torch.testing.assert_close(merged(**batch).logits, trained, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(adapted(**batch).logits, trained, rtol=1e-4, atol=1e-5)


def test_the_merged_model_differs_from_the_untrained_backbone(
    tiny_model_dir: str, separable_files: dict[str, str], tmp_path: Path
) -> None:
    # The control of the test above: training moved the logits, so equality there is not
    # the fresh adapters' zero update.
    torch.manual_seed(0)  # the fresh head's initialisation
    cfg = text_job(tiny_model_dir, separable_files, method="lora", lora={"r": 4, "alpha": 8})
    task = prepare_task(cfg)
    model = task.build_model(cfg.model).eval()
    batch = task.batch("validation", list(range(16)), train=False)
    batch.pop("labels")
    with torch.no_grad():
        before = model(**batch).logits.clone()
    train_steps(task, model, cfg, steps=5)
    with torch.no_grad():
        moved = (model.eval()(**batch).logits - before).abs().max().item()
    assert moved > 1e-3, moved


def test_a_vision_model_takes_lora_on_its_convolutions(
    tiny_vision_dir: str, digit_folder: str, tmp_path: Path
) -> None:
    from trainables.tasks.saved import load_classifier

    cfg = parse_config(
        {
            "model": {"name_or_path": tiny_vision_dir, "method": "lora", "lora": {"r": 2}},
            "data": {"train": digit_folder, "image_size": 32},
        }
    )
    task = prepare_task(cfg)
    model = task.build_model(cfg.model)
    assert any("lora_A" in n for n, p in model.named_parameters() if p.requires_grad)
    train_steps(task, model, cfg, steps=2)
    model.eval()
    task.save(model, tmp_path)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    from PIL import Image

    label = load_classifier(str(tmp_path))(Image.open(Path(digit_folder, "one", "0.png")))
    assert label in {"one", "zero"}
