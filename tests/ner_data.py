"""Small learnable NER files for the token-classification tests (made-up, seeded, CoNLL)."""

from __future__ import annotations

import random
from pathlib import Path

from tests.conftest import FILLER

#: Entities by type, each a tuple of words (a two-word entity is `B-X I-X`).
ENTITIES = {
    "PER": (("alice", "smith"), ("bob",), ("carol", "jones"), ("dave",)),
    "LOC": (("paris",), ("new", "york"), ("lima",), ("oslo",)),
    "ORG": (("acme", "corp"), ("globex",), ("initech",)),
}


def tagged_sentences(n: int, seed: int, long_every: int = 0) -> list[list[tuple[str, str]]]:
    """`n` sentences of filler words with 0-2 entities each; every `long_every`-th sentence
    is ~60 words long (several windows at a small `max_length`)."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        size = 60 if long_every and i % long_every == long_every - 1 else rng.randint(3, 10)
        words: list[tuple[str, str]] = [(rng.choice(FILLER), "O") for _ in range(size)]
        for _ in range(rng.randint(0, 2) + (size > 20) * 3):
            kind = rng.choice(sorted(ENTITIES))
            entity = rng.choice(ENTITIES[kind])
            tagged = [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(entity)]
            at = rng.randint(0, len(words))
            words[at:at] = tagged
        sentences.append(words)
    return sentences


def write_conll(path: Path, n: int, seed: int, long_every: int = 0) -> str:
    """A CoNLL file (token, tab, tag; a blank line between sentences) of `tagged_sentences`."""
    blocks = ["\n".join(f"{w}\t{t}" for w, t in s) for s in tagged_sentences(n, seed, long_every)]
    path.write_text("-DOCSTART-\tO\n\n" + "\n\n".join(blocks) + "\n")
    return str(path)
