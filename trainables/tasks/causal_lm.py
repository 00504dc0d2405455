"""Causal language modelling (GPT-style supervised fine-tuning) as a task: `task: causal_lm`.

Data, templating, loss masking and packing: `trainables.sft_data`. A row of a split is an
example, or with `data.packing` a packed row of several. The model is any transformers
`AutoModelForCausalLM` folder (or Hub id), fine-tuned in full or with LoRA (peft's
`CAUSAL_LM` task type, its default target modules for the architecture unless
`model.lora.target_modules` is given).

Loss: cross-entropy of the logits at position t against the label at t + 1, the mean over the
batch's learned tokens. Metrics: `loss` (the sum of token losses over the sum of learned
tokens, both summed over DDP ranks: the mean over every learned token of the split, however
the rows are sharded or batched) and `perplexity` = exp(loss); with
`training.eval_generate_rows`, `exact_match` and `contains` of greedy generations on that many
rows (`trainables.sft_generation`), their counts summed over ranks. The saved folder is the
model (merged, for LoRA, with its adapter in `adapter/`) and the tokenizer with its chat
template.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import FinetuneConfig, ModelConfig
from trainables.data import eval_batches
from trainables.errors import DataError, ModelLoadError
from trainables.lora import add_lora, has_adapter, load_lora, save_lora
from trainables.metrics import all_reduce_sum, rank_and_world
from trainables.models import load_tokenizer, resolve_model_path
from trainables.sft_data import (
    IGNORE,
    SftDataset,
    encode_split,
    generation_rows,
    pack,
    pad_id,
    read_sft_splits,
)
from trainables.sft_generation import GenerationScorer


def read_dataset(cfg: FinetuneConfig) -> SftDataset:
    """The job's rows, checked before any trial: their form, and (tokenized with the job's
    tokenizer) their chat template rendering and lengths.

    Raises:
        DataError: naming the field, file and row at fault.
    """
    dataset = read_sft_splits(cfg.data)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    for name, split in dataset.splits.items():
        encode_split(split, cfg.data, tokenizer, f"data.{name}")
    generation_scorer(cfg, dataset, tokenizer)
    return dataset


def generation_scorer(
    cfg: FinetuneConfig, dataset: SftDataset, tokenizer: Any
) -> GenerationScorer | None:
    """The rows each evaluated split generates from (`training.eval_generate_rows`), or None
    when the job does not generate.

    Raises:
        DataError: a split none of whose prompts is shorter than `data.max_length`.
    """
    count = cfg.training.eval_generate_rows
    if not count:
        return None
    rows = {}
    for name, split in dataset.splits.items():
        if name == "train":
            continue
        rows[name] = generation_rows(split, cfg.data, tokenizer, count)
        if not rows[name].prompts:
            raise DataError(
                f"training.eval_generate_rows: no row of {split.source} ({name}) has a prompt "
                f"shorter than data.max_length ({cfg.data.max_length} tokens) to generate from"
            )
    return GenerationScorer(rows, tokenizer, cfg.training.max_new_tokens)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the learned tokens' cross-entropy, their count): logits at t against labels
    at t + 1, `IGNORE` labels left out."""
    shifted = labels[:, 1 : logits.shape[1]]
    scores = logits[:, : shifted.shape[1]]
    total = F.cross_entropy(
        scores.reshape(-1, scores.shape[-1]),
        shifted.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return total, (shifted != IGNORE).sum()


def load_causal_lm(name_or_path: str, gradient_checkpointing: bool = False) -> Any:
    """`AutoModelForCausalLM.from_pretrained` in fp32 (bf16 autocast, where used, is the
    loop's); the KV cache off (training never reuses it)."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(name_or_path), dtype=torch.float32
        )
    except Exception as exc:
        raise ModelLoadError(
            f"model.name_or_path: cannot load a causal LM from {name_or_path!r}: {exc}"
        ) from None
    model.config.use_cache = False
    if gradient_checkpointing:
        # transformers 5 renamed it (the old name warns that it goes in v6).
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    return model


def keeps_examples_apart(model: Any) -> bool:
    """Whether `model`'s attention stays inside each packed example: two short examples
    packed in one row (positions restarting, no attention mask) give the same logits as each
    alone. transformers' models that build their masks with `create_causal_mask` read the
    restarting positions as example boundaries; others would attend across them."""
    device = next(model.parameters()).device
    vocab = int(model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, vocab, (1, 5), generator=generator).to(device)
    b = torch.randint(0, vocab, (1, 4), generator=generator).to(device)
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(
                input_ids=torch.cat([a, b], 1), position_ids=positions, use_cache=False
            ).logits
            alone = model(input_ids=b, use_cache=False).logits
    finally:
        model.train(was_training)
    return bool(torch.allclose(packed[:, 5:], alone, atol=1e-4, rtol=1e-4))


class CausalLmTask:
    """The causal-LM side of the task seam (see `trainables.tasks.Task`).

    Args:
        cfg: The job.
        dataset: Its rows.
        model: Where the tokenizer comes from (the job's model, or a saved folder).
    """

    kind = "causal_lm"
    label_names: tuple[str, ...] = ()

    def __init__(self, cfg: FinetuneConfig, dataset: SftDataset, model: ModelConfig) -> None:
        self.tokenizer = load_tokenizer(model.name_or_path)
        self.pad_id = pad_id(self.tokenizer)
        self.job_model = cfg.model
        self.packing = cfg.data.packing
        self.chat_template = cfg.data.chat_template
        self.gradient_checkpointing = cfg.training.gradient_checkpointing
        self.ids: dict[str, list[list[int]]] = {}
        self.labels: dict[str, list[list[int]]] = {}
        self.positions: dict[str, list[list[int]]] = {}
        for name, split in dataset.splits.items():
            encoded = encode_split(split, cfg.data, self.tokenizer, f"data.{name}")
            if self.packing:
                ids, labels, positions = pack(encoded, cfg.data.max_length)
                self.positions[name] = positions
            else:
                ids, labels = encoded.input_ids, encoded.labels
            self.ids[name], self.labels[name] = ids, labels
        self._lengths = {
            name: np.array([len(r) for r in rows], dtype=np.int64)
            for name, rows in self.ids.items()
        }
        self.generation = generation_scorer(cfg, dataset, self.tokenizer)

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split (packed rows, with packing)."""
        return {name: len(rows) for name, rows in self.ids.items()}

    def lengths(self, split: str) -> np.ndarray | None:
        """Tokens per row."""
        return self._lengths[split]

    def batch(
        self, split: str, rows: Sequence[int], train: bool, key: Sequence[int] = ()
    ) -> dict[str, torch.Tensor]:
        """`rows` right-padded to the longest: `input_ids`, `labels` (`IGNORE` at padding),
        and `attention_mask` (0 at padding) or, packed, `position_ids` restarting per example
        (padding is one more example, attended only by itself, never learned)."""
        width = max(len(self.ids[split][r]) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        positions = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            n = len(self.ids[split][r])
            ids[i, :n] = self.ids[split][r]
            labels[i, :n] = self.labels[split][r]
            mask[i, :n] = 1
            if self.packing:
                positions[i, :n] = self.positions[split][r]
                positions[i, n:] = np.arange(width - n)
        batch = {"input_ids": torch.from_numpy(ids)}
        if self.packing:
            batch["position_ids"] = torch.from_numpy(positions)
        else:
            batch["attention_mask"] = torch.from_numpy(mask)
        batch["labels"] = torch.from_numpy(labels)
        return batch

    def eval_order(self, split: str, rows: list[int], batch_size: int) -> list[list[int]]:
        """Rows sorted by length, then cut into batches (least padding)."""
        return eval_batches(self._lengths[split], rows, batch_size)

    def build_model(self, model: ModelConfig) -> torch.nn.Module:
        """The causal LM, fine-tuned by `model.method` (a checkpoint folder resumes: a LoRA
        run's adapters go back onto the job's pretrained model).

        Raises:
            ModelLoadError: it does not load, or with `data.packing` its attention does not
                keep packed examples apart.
        """
        checkpointing = self.gradient_checkpointing
        if model.method == "lora" and has_adapter(model.name_or_path):
            base = load_causal_lm(self.job_model.name_or_path, checkpointing)
            built: Any = load_lora(base, model.name_or_path)
        else:
            built = load_causal_lm(model.name_or_path, checkpointing)
            if self.packing and not keeps_examples_apart(built):
                raise ModelLoadError(
                    f"data.packing: {type(built).__name__} attends across packed examples "
                    f"(it does not read restarting position_ids as example boundaries); set "
                    f"data.packing: false"
                )
            if model.method == "lora":
                # With gradient checkpointing on, peft makes the frozen embeddings' output
                # require a gradient, so the recomputed layers' adapters get theirs (tested).
                built = add_lora(built, model.lora, [], task_type="CAUSAL_LM")
        return built

    @staticmethod
    def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits [row, position, vocabulary] for a batch without its labels."""
        return model(**batch, use_cache=False).logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the next token, the mean over the batch's learned tokens."""
        total, count = token_losses(logits, labels)
        return total / count.clamp(min=1)

    def metric_state(self, device: torch.device) -> CausalLmMetrics:
        """Token loss sum and count, and generation counts, summed over ranks."""
        return CausalLmMetrics(device, self.generation)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """`save_pretrained` of the model and its tokenizer with its chat template (a LoRA
        model: merged, with its adapter files in `adapter/`)."""
        if self.job_model.method == "lora":
            save_lora(model, folder, self._save_plain)
        else:
            self._save_plain(model, folder)

    def _save_plain(self, model: Any, folder: Path) -> None:
        model.config.use_cache = True  # for whoever generates with the saved model
        model.save_pretrained(folder)
        model.config.use_cache = False
        if self.chat_template:
            self.tokenizer.chat_template = self.chat_template
        self.tokenizer.save_pretrained(folder)


class CausalLmMetrics:
    """One evaluation's sums on one rank: token losses and learned tokens; rows generated,
    exact matches and containments (a `ModelMetricState` when the job generates)."""

    def __init__(self, device: torch.device, generation: GenerationScorer | None = None) -> None:
        self.sums = torch.zeros(5, dtype=torch.float64, device=device)
        self.generation = generation

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds a batch's summed token loss and its learned-token count."""
        total, count = token_losses(logits, labels)
        self.sums[0] += total.double()
        self.sums[1] += count.double()

    def add_model(self, model: torch.nn.Module, prefix: str) -> None:
        """Generates from this rank's shard of the split's generation rows and counts the
        matches (nothing when the job does not generate)."""
        if self.generation is None:
            return
        # The evaluated split, by the prefix its metrics get (`val_`: validation).
        split = "validation" if prefix == "val_" else prefix.removesuffix("_")
        rank, world = rank_and_world()
        counts = self.generation.score(model, split, rank, world)
        self.sums[2:] += torch.tensor(counts, dtype=torch.float64, device=self.sums.device)

    def result(self, prefix: str) -> dict[str, float]:
        """`loss` (mean over learned tokens, all ranks) and `perplexity`; where rows were
        generated, `exact_match` and `contains` (fractions of all ranks' generated rows)."""
        total, count, generated, exact, contained = all_reduce_sum(self.sums).cpu().tolist()
        loss = total / count if count else float("nan")
        try:
            perplexity = math.exp(loss)
        except OverflowError:
            perplexity = float("inf")
        out = {f"{prefix}loss": loss, f"{prefix}perplexity": perplexity}
        if generated:
            out[f"{prefix}exact_match"] = exact / generated
            out[f"{prefix}contains"] = contained / generated
        return out


def prepare(
    cfg: FinetuneConfig, dataset: Any = None, model: ModelConfig | None = None
) -> CausalLmTask:
    """The causal-LM task of `cfg`, its data read here unless given."""
    return CausalLmTask(cfg, dataset or read_sft_splits(cfg.data), model or cfg.model)


#: What `sweeps verify` asks a promoted causal LM (as a user turn where it has a template).
SMOKE_PROMPT = "Write one sentence about the sea."


def load_generator(folder: str, max_new_tokens: int = 20) -> Any:
    """A function from a prompt to the model's greedy continuation (deterministic), as
    transformers loads the folder; a tokenizer with a chat template renders the prompt as a
    user turn with the generation prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return lambda prompt: generate(model, tokenizer, prompt, max_new_tokens)


def generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 20) -> list[int]:
    """The token ids `model` generates greedily after `prompt` (rendered as a user turn where
    the tokenizer has a chat template)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        encoded = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    else:
        encoded = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id(tokenizer),
        )
    return [int(t) for t in out[0, encoded["input_ids"].shape[1] :]]
