"""Entity-level counts of tagged sentences, as seqeval scores them in its default mode.

An entity is a (type, first word, last word) span read from IOB2 / IOBES tags with seqeval's
lenient (default, non-strict) chunking rules: an `I-X` after `O` or after another type starts
a new entity, a type change ends one, and `E-` / `S-` close one. Precision, recall and F1 are
micro-averaged over every entity of a split (exact span and type), computed from three sums,
so per-rank counts added across DDP ranks give the figures of the whole split exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Tag prefixes by scheme (IOB1 files read as IOB2: the lenient chunking finds the same spans).
SCHEME_PREFIXES = {"iob2": ("B", "I"), "iobes": ("B", "I", "E", "S")}


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag: `("O", "")` for `O`, `("B", "PER")` for `B-PER`."""
    if tag == "O":
        return "O", ""
    return tag[0], tag[2:]


def _ends(prev: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether an entity ends before a word tagged (tag, type_) that follows (prev, prev_type)."""
    closed = prev in ("E", "S") or (prev in ("B", "I") and tag in ("B", "S", "O"))
    return closed or (prev != "O" and prev_type != type_)


def _starts(prev: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether an entity starts at a word tagged (tag, type_) that follows (prev, prev_type)."""
    opened = tag in ("B", "S") or (tag in ("E", "I") and prev in ("E", "S", "O"))
    return opened or (tag != "O" and prev_type != type_)


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first word, last word) entities of one sentence's tags."""
    found = set()
    prev, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, type_ = split_tag(tag)
        if _ends(prev, prefix, prev_type, type_):
            found.add((prev_type, begin, i - 1))
        if _starts(prev, prefix, prev_type, type_):
            begin = i
        prev, prev_type = prefix, type_
    return found


@dataclass
class EntityCounts:
    """Sums over sentences: entities found in both, predicted, gold; words right, words."""

    true_positive: int = 0
    predicted: int = 0
    gold: int = 0
    correct_words: int = 0
    words: int = 0

    def add(self, gold: Sequence[str], predicted: Sequence[str]) -> None:
        """Counts one sentence's word-level gold and predicted tags."""
        if len(gold) != len(predicted):
            raise ValueError(f"{len(gold)} gold tags but {len(predicted)} predicted")
        gold_spans, predicted_spans = entities(gold), entities(predicted)
        self.true_positive += len(gold_spans & predicted_spans)
        self.predicted += len(predicted_spans)
        self.gold += len(gold_spans)
        self.correct_words += sum(g == p for g, p in zip(gold, predicted, strict=True))
        self.words += len(gold)

    def as_list(self) -> list[int]:
        """The five sums, in field order (for one all-reduce)."""
        return [self.true_positive, self.predicted, self.gold, self.correct_words, self.words]


def entity_metrics(counts: Sequence[float], prefix: str) -> dict[str, float]:
    """Entity precision / recall / F1 and word accuracy from summed counts (`EntityCounts`'
    five sums, in its field order), keys prefixed (`val_`, `test_`). A ratio with nothing to
    count is 0.0, as seqeval's default."""
    true_positive, predicted, gold, correct_words, words = (float(c) for c in counts)
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / gold if gold else 0.0
    # seqeval's formula (F-beta with beta 1 from precision and recall), so figures agree to the bit.
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        f"{prefix}f1_entity": f1,
        f"{prefix}precision_entity": precision,
        f"{prefix}recall_entity": recall,
        f"{prefix}token_accuracy": correct_words / words if words else 0.0,
    }
