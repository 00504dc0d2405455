"""Image classification as a task: decode once, augment per batch, a timm/transformers model.

Every image is decoded once per worker (not once per epoch) and kept as a uint8 tensor
resized to the evaluation size (`image_size / crop_pct` on its short side), so an epoch costs
only crops, flips and normalisation. Training batches draw their augmentation (random resized
crop, flip, colour jitter, RandAugment, mixup/cutmix) from a generator seeded by the batch's
identity (seed, epoch, batch index, rank), not from the global stream: a resumed run draws
exactly the augmentations it would have, whatever ran before. Evaluation is resize + centre
crop, normalised with the model's pretrained statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import AugmentConfig, FinetuneConfig, ModelConfig
from trainables.data import Dataset, LabeledSplit, build_dataset
from trainables.image_files import open_image
from trainables.lora import add_lora, has_adapter, load_lora, save_by_method
from trainables.metrics import ClassificationMetrics, MetricState
from trainables.tasks.vision_models import (
    Preprocessing,
    build_vision_model,
    import_timm,
    preprocessing_of,
    save_vision_model,
)


def prepare(
    cfg: FinetuneConfig, dataset: Dataset | None = None, model: ModelConfig | None = None
) -> ImageTask:
    """The image classification task of `cfg`, its images decoded."""
    return ImageTask(cfg, dataset or build_dataset(cfg.data, task="image"), model or cfg.model)


def _decode(split: LabeledSplit, name: str, field: str, short_side: int) -> list[torch.Tensor]:
    """Every image of `split` as a CHW uint8 tensor, its short side resized to `short_side`."""
    from PIL import Image

    out = []
    for row, ref in enumerate(split.inputs):
        image = open_image(ref, f"{field} ({name} split, row {row})")
        w, h = image.size
        scale = short_side / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        out.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous())
    return out


class ImageTask:
    """The image side of the task seam (see `trainables.tasks.Task`)."""

    kind = "image"

    def __init__(self, cfg: FinetuneConfig, dataset: Dataset, model: ModelConfig) -> None:
        import_timm()  # torchvision's transforms below, importable on a CPU-only torch
        from torchvision.transforms import v2

        pre = preprocessing_of(model)
        side = cfg.data.image_size or pre.image_size
        crop_pct = cfg.augment.crop_pct or pre.crop_pct
        self.preprocessing = Preprocessing(side, pre.mean, pre.std, crop_pct)
        self.label_names = dataset.label_names
        self.job_model = cfg.model
        self.label_smoothing = cfg.training.label_smoothing
        self.labels = {name: split.labels for name, split in dataset.splits.items()}
        field = f"data.{cfg.data.image_column or 'image'}"
        short = math.floor(side / crop_pct)
        self.images = {
            name: _decode(split, name, field, short) for name, split in dataset.splits.items()
        }
        normalise = [
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.mean), list(pre.std)),
        ]
        self.eval_transform = v2.Compose([v2.CenterCrop(side), *normalise])
        self.train_transform = v2.Compose([*_augmentations(cfg.augment, side), *normalise])
        self.mix = _mixing(cfg.augment, len(self.label_names))

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split."""
        return {name: len(labels) for name, labels in self.labels.items()}

    def lengths(self, split: str) -> np.ndarray | None:
        """Images have no length to group by."""
        return None

    def batch(
        self, split: str, rows: Sequence[int], train: bool, key: Sequence[int] = ()
    ) -> dict[str, torch.Tensor]:
        """`pixel_values` and `labels` of `rows`; augmented (and mixed) when `train`.

        A mixed batch's labels are class probabilities (what cross-entropy takes as soft
        targets); otherwise they are label ids.
        """
        labels = torch.from_numpy(self.labels[split][np.asarray(rows)])
        images = self.images[split]
        if not train:
            pixels = torch.stack([self.eval_transform(images[r]) for r in rows])
            return {"pixel_values": pixels, "labels": labels}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_of(key))
            pixels = torch.stack([self.train_transform(images[r]) for r in rows])
            if self.mix is not None:
                pixels, labels = self.mix(pixels, labels)
        return {"pixel_values": pixels, "labels": labels}

    def eval_order(self, split: str, rows: list[int], batch_size: int) -> list[list[int]]:
        """Evaluation batches of `rows`, in order."""
        return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]

    def build_model(self, model: ModelConfig) -> torch.nn.Module:
        """The backbone with a fresh head for the labels, fine-tuned by `model.method` (a
        checkpoint folder resumes: a LoRA run's adapters go back onto the job's backbone)."""
        frozen = {"freeze": model.effective_freeze}
        if model.method == "lora" and has_adapter(model.name_or_path):
            base = build_vision_model(self.job_model.model_copy(update=frozen), self.label_names)
            return load_lora(base, model.name_or_path)
        built = build_vision_model(model.model_copy(update=frozen), self.label_names)
        if model.method != "lora":
            return built
        return add_lora(built, model.lora, head_modules(built), task_type=None)

    @staticmethod
    def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits for a batch without its labels."""
        return model(batch["pixel_values"])

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (with `training.label_smoothing`) on label ids, or on the class
        probabilities of a mixed batch."""
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def metric_state(self, device: torch.device) -> MetricState:
        """Loss, accuracy and macro F1 from a confusion matrix summed over ranks."""
        return ClassificationMetrics(len(self.label_names), device)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """timm's (or transformers') save format with labels and preprocessing (a LoRA
        model: merged, with its adapter files in `adapter/`)."""
        save_by_method(model, folder, self.job_model.method, self._save_plain)

    def _save_plain(self, model: Any, folder: Path) -> None:
        save_vision_model(model, folder, self.label_names, self.preprocessing)


def head_modules(model: Any) -> list[str]:
    """Names of the classification head's modules in a `VisionModel`."""
    inner = model.inner
    head = inner.get_classifier() if model.library == "timm" else inner.classifier
    return [f"inner.{n}" for n, m in inner.named_modules() if m is head]


def _seed_of(key: Sequence[int]) -> int:
    """A 63-bit seed from the batch's identity."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> 1)


def _augmentations(a: AugmentConfig, side: int) -> list[Any]:
    from torchvision.transforms import v2

    steps: list[Any] = [
        v2.RandomResizedCrop(side, scale=(a.crop_scale_min, a.crop_scale_max), antialias=True)
    ]
    if a.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(a.hflip))
    if a.color_jitter > 0:
        j = a.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    if a.randaugment_magnitude is not None:
        steps.append(v2.RandAugment(num_ops=2, magnitude=a.randaugment_magnitude))
    return steps


def _mixing(a: AugmentConfig, num_classes: int) -> Any:
    from torchvision.transforms import v2

    choices = []
    if a.mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=a.mixup_alpha, num_classes=num_classes))
    if a.cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=a.cutmix_alpha, num_classes=num_classes))
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
