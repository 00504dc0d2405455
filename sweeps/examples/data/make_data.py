"""Writes the made-up data files of the own-data examples beside this script (committed; rerun
to regenerate them byte for byte):

    python sweeps/examples/data/make_data.py

- `tickets_train.csv`, `tickets_validation.csv`: support messages (`message`) routed to a team
  (`team`: billing, shipping or account); single texts for `own_data_texts.yaml`.
- `faq_train.jsonl`, `faq_test.jsonl`: a question, a candidate answer and whether the answer
  fits the question (`fits`: yes or no); text pairs for `own_data_pairs.yaml`.

Each label is decided by a topic keyword among filler words, so a small model learns it in a
few hundred steps.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEAMS = {
    "billing": ("invoice", "refund", "charge", "payment", "receipt"),
    "shipping": ("parcel", "delivery", "courier", "tracking", "package"),
    "account": ("password", "login", "username", "email", "profile"),
}
FILLER = ("hi", "my", "the", "is", "not", "please", "help", "with", "today", "again", "still")
TOPICS = {
    "refunds": ("refund", "money back", "return fee"),
    "delivery": ("delivery", "courier", "arrival date"),
    "passwords": ("password", "reset link", "login code"),
    "sizes": ("size chart", "fit", "measurements"),
}


def tickets(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        team = rng.choice(sorted(TEAMS))
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
        words.insert(rng.randint(0, len(words)), rng.choice(TEAMS[team]))
        rows.append({"message": " ".join(words), "team": team})
    return rows


def faq(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        asked = rng.choice(sorted(TOPICS))
        fits = rng.random() < 0.5
        answered = asked if fits else rng.choice(sorted(set(TOPICS) - {asked}))
        question = f"how do i get help with my {rng.choice(TOPICS[asked])}?"
        answer = f"see our page on {rng.choice(TOPICS[answered])}; {rng.choice(FILLER)} thanks"
        rows.append({"question": question, "answer": answer, "fits": "yes" if fits else "no"})
    return rows


def write_csv(rows: list[dict[str, str]], name: str) -> None:
    with (HERE / name).open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(rows: list[dict[str, str]], name: str) -> None:
    (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    write_csv(tickets(240, seed=1), "tickets_train.csv")
    write_csv(tickets(60, seed=2), "tickets_validation.csv")
    write_jsonl(faq(240, seed=3), "faq_train.jsonl")
    write_jsonl(faq(60, seed=4), "faq_test.jsonl")
