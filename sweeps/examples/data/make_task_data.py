"""Writes the data of the regression and multi-label examples beside this script (committed;
rerun to regenerate them byte for byte):

    python sweeps/examples/data/make_task_data.py [--goemotions ../shared/data/goemotions]

- `similarity_train.csv`, `similarity_validation.csv` (made up): two sentences about a scene and
  how alike they are (`similarity`, 0.0 to 5.0), for `regression.yaml`. STS-B itself is not
  shipped: its scores are CC BY-SA 4.0, but its sentences come from sources under licences of
  their own (the MSR paraphrase corpus needs Microsoft's agreement), so a slice cannot be
  redistributed here. These pairs mimic its form: the score counts what the two sentences share
  (subject, action, object, place), with a little noise.
- `goemotions_train.tsv`, `goemotions_validation.tsv`: the first 1,600 rows of GoEmotions'
  train split and 400 of its dev split (Demszky et al., ACL 2020; Apache License 2.0, see
  `goemotions_README.md`), for `multi_label.yaml`: Reddit comments (`text`) with one or more
  of 28 emotion ids (`label`, e.g. `3,27`; names in the example's `data.label_names`).
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUBJECTS = ("a man", "a woman", "a child", "a dog", "an old man", "a girl", "a cat", "a chef")
ACTIONS = ("is playing", "is cutting", "is carrying", "is washing", "is painting", "is eating")
OBJECTS = ("a guitar", "an onion", "a box", "a car", "a fence", "an apple", "a ball", "a bowl")
PLACES = ("in the park", "in a kitchen", "on a street", "at the beach", "in a garden", "indoors")


def sentence(parts: tuple[str, str, str, str]) -> str:
    text = " ".join(parts)
    return text[0].upper() + text[1:] + "."


def similarity_rows(n: int, seed: int) -> list[tuple[str, str, float]]:
    """Pairs whose score is 5/4 per shared part (0-4 shared), plus noise, clipped to 0-5."""
    rng = random.Random(seed)
    pools = (SUBJECTS, ACTIONS, OBJECTS, PLACES)
    rows = []
    for _ in range(n):
        first = tuple(rng.choice(pool) for pool in pools)
        shared = rng.sample(range(4), rng.randint(0, 4))
        second = tuple(
            first[i] if i in shared else rng.choice([p for p in pools[i] if p != first[i]])
            for i in range(4)
        )
        score = min(5.0, max(0.0, 1.25 * len(shared) + rng.uniform(-0.3, 0.3)))
        rows.append((sentence(first), sentence(second), round(score, 2)))  # type: ignore[arg-type]
    return rows


def write_similarity() -> None:
    for name, n, seed in (("train", 800, 1), ("validation", 200, 2)):
        with open(HERE / f"similarity_{name}.csv", "w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(["sentence1", "sentence2", "similarity"])
            out.writerows(similarity_rows(n, seed))


def write_goemotions(source: Path) -> None:
    for name, file, rows in (("train", "train.tsv", 1600), ("validation", "dev.tsv", 400)):
        lines = (source / file).read_text(encoding="utf-8").splitlines()
        header, body = lines[0], lines[1 : rows + 1]
        assert header.split("\t")[:2] == ["text", "label"], header
        (HERE / f"goemotions_{name}.tsv").write_text("\n".join([header, *body]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goemotions", type=Path, help="the GoEmotions folder (TSVs)")
    args = parser.parse_args()
    write_similarity()
    if args.goemotions:
        write_goemotions(args.goemotions)


if __name__ == "__main__":
    main()
