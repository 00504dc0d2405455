"""Token classification (named-entity recognition) as a task: a tag per word, predicted by a
transformers token-classification head on the word's first piece.

Data and windows: `trainables.tasks.token_data` (CoNLL / JSONL / Parquet, the tag scheme,
word-piece labels, sentences longer than `data.max_length` cut into windows of whole words).
A row of every split is a sentence; its batch holds all of its windows, so a sentence is
evaluated whole on one rank.

Loss: cross-entropy over labelled pieces (-100 ignored), the mean over a batch's labelled
pieces. Metrics (`trainables.tasks.entities`): entity-level `f1_entity`, `precision_entity`,
`recall_entity` (exact span and type, seqeval's default) and `token_accuracy` over words,
from five counts summed over DDP ranks, and `loss`. The saved folder is an
`AutoModelForTokenClassification` with `id2label` (the tags) and the tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import DataConfig, FinetuneConfig, ModelConfig
from trainables.data import SPLITS, eval_batches
from trainables.errors import DataError, ModelLoadError
from trainables.lora import build_by_method, save_by_method, with_processor
from trainables.metrics import all_reduce_sum
from trainables.models import build_model, load_tokenizer, resolve_model_path
from trainables.tasks import token_data
from trainables.tasks.entities import EntityCounts, entity_metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaggedDataset:
    """A token-classification job's splits (tagged sentences) and its tags (`label_names`),
    shaped as `trainables.data.Dataset` so the seam passes it along the same way."""

    splits: dict[str, token_data.TaggedSplit]
    label_names: tuple[str, ...]


def read_dataset(cfg: FinetuneConfig) -> TaggedDataset:
    """The job's tagged sentences, checked: files read (CoNLL, JSONL, Parquet), the tag scheme
    detected or given and checked, missing validation / test splits carved from train
    (seeded), and the tag set.

    Raises:
        DataError: naming the field, file, line or row that is wrong.
    """
    return read_tagged_splits(cfg.data)


def read_tagged_splits(data: DataConfig) -> TaggedDataset:
    """`read_dataset` for a data section."""
    if data.train is None:
        raise DataError(
            "data.train: token classification reads files (CoNLL, JSONL or Parquet); give "
            "data.train (and data.validation / data.test)"
        )
    splits: dict[str, token_data.TaggedSplit] = {}
    for name in SPLITS:
        uri = getattr(data, name)
        if uri:
            splits[name] = token_data.read_tagged(
                uri,
                f"data.{name}",
                data.format,
                data.tokens_column,
                data.tags_column,
                data.label_names,
            )
    scheme = token_data.detect_scheme(splits) if data.tag_scheme == "auto" else data.tag_scheme
    for name, split in splits.items():
        orphans = token_data.check_scheme(split, scheme, f"data.{name}")
        if orphans:
            logger.warning(
                "data.%s: %d I-/E- tags of %s continue no entity; each starts one, as seqeval's "
                "default mode scores them (IOB1 files read this way)",
                name,
                orphans,
                split.file,
            )
    original = len(splits["train"])
    for name, fraction in (("validation", data.validation_fraction), ("test", data.test_fraction)):
        if name in splits or fraction == 0.0:
            continue
        share = fraction * original / len(splits["train"])
        kept, held = token_data.carve(splits["train"], share, data.split_seed)
        if not len(held) or not len(kept):
            raise DataError(
                f"data.{name}_fraction: {fraction} of {len(splits['train'])} train sentences "
                f"leaves an empty split; give a data.{name} file or a larger fraction"
            )
        splits["train"], splits[name] = kept, held
    return TaggedDataset(splits, token_data.tag_names(splits, scheme, data.label_names))


def load_word_tokenizer(name_or_path: str) -> Any:
    """The model's fast tokenizer, able to take words (`is_split_into_words`): a byte-level
    BPE one (RoBERTa, GPT-2) is loaded with `add_prefix_space`, as HF's `run_ner` does."""
    tokenizer = load_tokenizer(name_or_path)
    try:
        tokenizer([["a"]], is_split_into_words=True)
    except Exception:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(name_or_path), add_prefix_space=True
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"model.name_or_path: {name_or_path!r} has no fast tokenizer; token "
            f"classification needs one (its word_ids() align tags to word pieces)"
        )
    return tokenizer


def build_token_model(cfg: ModelConfig, label_names: tuple[str, ...]) -> Any:
    """The pretrained backbone with a fresh token-classification head for the tags (id2label,
    label2id in its config), frozen as configured."""
    from transformers import AutoModelForTokenClassification

    return build_model(cfg, label_names, auto_class=AutoModelForTokenClassification)


class TokenClassificationTask:
    """The token-classification side of the task seam (see `trainables.tasks.Task`).

    Args:
        cfg: The job.
        dataset: Its tagged sentences and tags.
        model: Where the tokenizer comes from (the job's model, or a saved folder).
    """

    kind = "token_classification"

    def __init__(self, cfg: FinetuneConfig, dataset: TaggedDataset, model: ModelConfig) -> None:
        self.tokenizer = load_word_tokenizer(model.name_or_path)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.job_model = cfg.model
        self.label_names = dataset.label_names
        self.outside = self.label_names.index("O") if "O" in self.label_names else 0
        self.windows: dict[str, token_data.Windows] = {
            name: token_data.make_windows(
                split,
                self.label_names,
                self.tokenizer,
                cfg.data.max_length,
                cfg.data.label_all_tokens,
            )
            for name, split in dataset.splits.items()
        }
        self.typed = "token_type_ids" in self.tokenizer.model_input_names
        # Windows of every split get one id each, so a metric state can find a window (and so
        # its sentence and gold tags) from the id it sees in `labels`.
        self.window_base: dict[str, int] = {}
        base = 0
        for name, windows in self.windows.items():
            self.window_base[name] = base
            base += len(windows.input_ids)
        self.sentence_of: dict[str, np.ndarray] = {
            name: np.repeat(np.arange(len(w.gold)), np.diff(w.sentence_windows))
            for name, w in self.windows.items()
        }
        self._lengths = {
            name: np.add.reduceat(w.lengths, w.sentence_windows[:-1])
            for name, w in self.windows.items()
        }

    @property
    def splits(self) -> dict[str, int]:
        """Sentences per split."""
        return {name: len(w.gold) for name, w in self.windows.items()}

    def lengths(self, split: str) -> np.ndarray | None:
        """Pieces per sentence (all its windows)."""
        return self._lengths[split]

    def batch(
        self, split: str, rows: Sequence[int], train: bool, key: Sequence[int] = ()
    ) -> dict[str, torch.Tensor]:
        """Every window of the sentences `rows`, padded to the longest; `labels` is
        [window, 1 + width]: the window's id, then its piece labels (-100: ignored)."""
        windows = self.windows[split]
        chosen = windows.windows_of(rows)
        width = max(len(windows.input_ids[w]) for w in chosen)
        ids = np.full((len(chosen), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(chosen), width), dtype=np.int64)
        labels = np.full((len(chosen), 1 + width), token_data.IGNORE, dtype=np.int64)
        for i, w in enumerate(chosen):
            n = len(windows.input_ids[w])
            ids[i, :n] = windows.input_ids[w]
            mask[i, :n] = 1
            labels[i, 0] = self.window_base[split] + w
            labels[i, 1 : 1 + n] = windows.labels[w]
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self.typed:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        batch["labels"] = torch.from_numpy(labels)
        return batch

    def eval_order(self, split: str, rows: list[int], batch_size: int) -> list[list[int]]:
        """Sentences sorted by pieces, then cut into batches (least padding)."""
        return eval_batches(self._lengths[split], rows, batch_size)

    def build_model(self, model: ModelConfig) -> torch.nn.Module:
        """The backbone with a fresh token-classification head, fine-tuned by `model.method`
        (a checkpoint folder resumes: a LoRA run's adapters go back onto the job's backbone)."""
        return build_by_method(
            model,
            self.job_model,
            lambda cfg: build_token_model(cfg, self.label_names),
            task_type="TOKEN_CLS",
        )

    @staticmethod
    def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits [window, piece, tag] for a batch without its labels."""
        return model(**batch).logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labelled pieces (the mean over them)."""
        pieces = labels[:, 1 : 1 + logits.shape[1]]
        if not bool(
            (pieces != token_data.IGNORE).any()
        ):  # every word of the batch dropped by the tokenizer
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), pieces.reshape(-1), ignore_index=token_data.IGNORE
        )

    def metric_state(self, device: torch.device) -> TokenMetrics:
        """Loss and entity / word counts, summed over ranks."""
        return TokenMetrics(self, device)

    def split_of(self, window_id: int) -> tuple[str, int]:
        """(split, window row) of a window id."""
        for name, base in self.window_base.items():
            if base <= window_id < base + len(self.windows[name].input_ids):
                return name, window_id - base
        raise KeyError(window_id)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """`save_pretrained` of the model and its tokenizer (a LoRA model: merged, with its
        adapter files in `adapter/`)."""
        save_by_method(model, folder, self.job_model.method, with_processor(self.tokenizer))


class TokenMetrics:
    """One evaluation's sums on one rank: loss over labelled pieces, and entity / word counts
    of whole sentences (a batch holds every window of its sentences)."""

    def __init__(self, task: TokenClassificationTask, device: torch.device) -> None:
        self.task = task
        self.loss = torch.zeros(2, dtype=torch.float64, device=device)
        self.counts = EntityCounts()

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Loss sum and count of the batch's labelled pieces; its sentences' entity counts."""
        pieces = labels[:, 1 : 1 + logits.shape[1]]
        labelled = pieces != token_data.IGNORE
        self.loss[0] += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            pieces.reshape(-1),
            ignore_index=token_data.IGNORE,
            reduction="sum",
        ).double()
        self.loss[1] += labelled.sum().double()
        predicted = logits.argmax(dim=-1).cpu().numpy()
        ids = labels[:, 0].cpu().numpy()
        split, _ = self.task.split_of(int(ids[0]))
        windows = self.task.windows[split]
        rows = ids - self.task.window_base[split]
        sentences = self.task.sentence_of[split][rows]
        names = self.task.label_names
        for sentence in dict.fromkeys(sentences.tolist()):
            own = np.flatnonzero(sentences == sentence)
            expected = windows.sentence_windows[sentence + 1] - windows.sentence_windows[sentence]
            if len(own) != expected:
                raise RuntimeError(f"sentence {sentence}: {len(own)} of {expected} windows")
            words = token_data.word_predictions(
                windows, sentence, [predicted[i] for i in own], self.task.outside
            )
            self.counts.add([names[t] for t in windows.gold[sentence]], [names[t] for t in words])

    def result(self, prefix: str) -> dict[str, float]:
        """`loss`, `f1_entity`, `precision_entity`, `recall_entity`, `token_accuracy`."""
        counts = torch.tensor(self.counts.as_list(), dtype=torch.float64, device=self.loss.device)
        summed = all_reduce_sum(torch.cat([self.loss, counts])).cpu().tolist()
        loss = summed[0] / summed[1] if summed[1] else float("nan")
        return {f"{prefix}loss": loss} | entity_metrics(summed[2:], prefix)


def prepare(
    cfg: FinetuneConfig, dataset: Any = None, model: ModelConfig | None = None
) -> TokenClassificationTask:
    """The token-classification task of `cfg`, its data read here unless given."""
    return TokenClassificationTask(cfg, dataset or read_dataset(cfg), model or cfg.model)


#: What `sweeps verify` tags with a promoted token-classification model.
SMOKE_SENTENCE = "Alice Smith flew from Paris to New York to meet the Acme team"


def is_token_classifier(folder: str) -> bool:
    """Whether `folder` holds a transformers token-classification model."""
    import json

    config = json.loads(Path(folder, "config.json").read_text())
    return any(a.endswith("ForTokenClassification") for a in config.get("architectures") or ())


def load_tagger(folder: str) -> Any:
    """A function from a sentence (words split by whitespace, or a list of words) to its
    (word, tag) pairs, as transformers loads the folder: the tag of a word is its first
    piece's; a word the tokenizer drops, or one past the model's maximum length, is tagged
    `O`."""
    from transformers import AutoModelForTokenClassification

    tokenizer = load_word_tokenizer(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    names = model.config.id2label

    def tag(sentence: str | list[str]) -> list[tuple[str, str]]:
        words = sentence.split() if isinstance(sentence, str) else list(sentence)
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**encoded).logits[0].argmax(dim=-1).tolist()
        tags = ["O"] * len(words)
        seen: set[int] = set()
        for piece, word in enumerate(encoded.word_ids(0)):
            if word is not None and word not in seen:
                seen.add(word)
                tags[word] = str(names[predicted[piece]])
        return list(zip(words, tags, strict=True))

    return tag
