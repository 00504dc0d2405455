"""The embedded demo task: short reviews whose sentiment needs composition to read.

Generated here, deterministically, with no network. Single keywords are not enough: a
negator flips an opinion ("not dull"), and in a contrast the second clause wins ("the plot is
clever, but the acting is wooden"). Hedged opinions are weak and easy to misread, and a few
labels are noisy, so the ceiling sits below 100% and hyperparameters move the result.
"""

from __future__ import annotations

import random

import pyarrow as pa

LABEL_NAMES = ("negative", "positive")

_POSITIVE = (
    "brilliant",
    "charming",
    "gripping",
    "moving",
    "clever",
    "delightful",
    "superb",
    "witty",
    "beautiful",
    "thrilling",
    "heartfelt",
    "engaging",
    "inventive",
    "stunning",
    "tender",
)
_NEGATIVE = (
    "dull",
    "clumsy",
    "tedious",
    "bland",
    "messy",
    "shallow",
    "wooden",
    "predictable",
    "boring",
    "lifeless",
    "awkward",
    "forgettable",
    "overlong",
    "grating",
    "hollow",
)
_ASPECTS = (
    "the plot",
    "the acting",
    "the script",
    "the soundtrack",
    "the ending",
    "the cast",
    "the dialogue",
    "the pacing",
    "the camera work",
    "the story",
    "the lead",
    "the humour",
)
_INTENSIFIERS = ("very", "really", "truly", "remarkably", "utterly", "rather", "quite")
_NEGATORS = ("not", "never", "hardly", "far from")
_HEDGES = ("somewhat", "a little", "at times", "mostly")
_OPENERS = ("", "honestly ,", "i thought", "to me ,", "overall ,", "frankly ,")
_CONTRASTS = ("but", "yet", "however ,", "though in the end")


def _clause(rng: random.Random) -> tuple[str, int]:
    """One opinion about one aspect, and its polarity (1 positive, 0 negative)."""
    polarity = rng.randint(0, 1)
    adjective = rng.choice(_POSITIVE if polarity else _NEGATIVE)
    aspect = rng.choice(_ASPECTS)
    verb = "are" if aspect in ("the cast",) else "is"
    roll = rng.random()
    if roll < 0.35:
        negator = rng.choice(_NEGATORS)
        return f"{aspect} {verb} {negator} {adjective}", 1 - polarity
    if roll < 0.6:
        return f"{aspect} {verb} {rng.choice(_INTENSIFIERS)} {adjective}", polarity
    if roll < 0.75:
        return f"{aspect} {verb} {rng.choice(_HEDGES)} {adjective}", polarity
    return f"{aspect} {verb} {adjective}", polarity


def _review(rng: random.Random) -> tuple[str, int]:
    opener = rng.choice(_OPENERS)
    first, first_label = _clause(rng)
    if rng.random() < 0.55:
        second, second_label = _clause(rng)
        # Contrasts mostly join opposite opinions; the later clause decides the review.
        while second_label == first_label and rng.random() < 0.8:
            second, second_label = _clause(rng)
        text, label = f"{first} {rng.choice(_CONTRASTS)} {second}", second_label
    else:
        text, label = first, first_label
    return " ".join(part for part in (opener, text, ".") if part), label


def demo_table(num_examples: int, seed: int, label_noise: float = 0.05) -> pa.Table:
    """A table of `num_examples` reviews with columns `text` and `label` (a label name).

    Example:
        >>> demo_table(3, seed=0).column_names
        ['text', 'label']
    """
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(num_examples):
        text, label = _review(rng)
        if rng.random() < label_noise:
            label = 1 - label
        texts.append(text)
        labels.append(LABEL_NAMES[label])
    return pa.table({"text": texts, "label": labels})


#: Split sizes of the demo task; seeds differ so no review repeats across splits by design.
DEMO_SPLITS = {"train": (2000, 1), "validation": (400, 2), "test": (400, 3)}


def demo_splits() -> dict[str, pa.Table]:
    """The demo task's train, validation and test splits."""
    return {name: demo_table(n, seed) for name, (n, seed) in DEMO_SPLITS.items()}
