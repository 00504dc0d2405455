"""Writes the WNUT-17 slice of `ner.yaml` beside this script (committed; rerun to regenerate it
byte for byte from the WNUT-17 files):

    python sweeps/examples/data/make_wnut17_slice.py ../shared/data/wnut17

A seeded random sample of whole sentences, in file order: 400 of the 3,394 training sentences
(`wnut17_train.conll`), 100 of the 1,009 dev sentences (`wnut17_validation.conll`) and 100 of
the 1,287 test sentences (`wnut17_test.conll`). Token lines are copied as they are (a token, a
tab, its BIO tag); sentences are separated by an empty line. WNUT-17 is CC-BY 4.0: see
`wnut17_README.md` for the attribution.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = {
    "train": ("wnut17train.conll", 400),
    "validation": ("emerging.dev.conll", 100),
    "test": ("emerging.test.annotated", 100),
}


def sentences(path: Path) -> list[list[str]]:
    """The token lines of each sentence (lines holding only whitespace separate them)."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line.rstrip("\n"))
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def main(folder: Path) -> None:
    for split, (name, count) in SOURCES.items():
        every = sentences(folder / name)
        chosen = sorted(random.Random(f"wnut17-{split}").sample(range(len(every)), count))
        text = "\n\n".join("\n".join(every[i]) for i in chosen) + "\n"
        (HERE / f"wnut17_{split}.conll").write_text(text, encoding="utf-8")
        print(f"wnut17_{split}.conll: {count} of {len(every)} sentences of {name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
