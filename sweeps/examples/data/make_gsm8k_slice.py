"""Writes the GSM8K slice of `sft.yaml` beside this script (committed; rerun to regenerate it
byte for byte from GSM8K's train.jsonl):

    python sweeps/examples/data/make_gsm8k_slice.py ../shared/data/gsm8k

A seeded random sample of 250 of GSM8K's 7,473 training problems (GSM8K has no dev split),
in file order: the first 200 are `gsm8k_train.jsonl`, the last 50 `gsm8k_validation.jsonl`.
Each row is `prompt` (`Question: <question>` and a line `Answer:`), `completion` (a space and
the worked solution, its calculator annotations `<<48/2=24>>` removed, ending with the line
`#### <final answer>`) and `answer` (the final answer alone, as text). GSM8K is MIT: see
`gsm8k_README.md` for the notice.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN, VALIDATION, SEED = 200, 50, 8
ANNOTATION = re.compile(r"<<[^>]*>>")


def row(problem: dict[str, str]) -> dict[str, str]:
    """A GSM8K problem as a prompt, a completion and its final answer."""
    solution = ANNOTATION.sub("", problem["answer"])
    answer = solution.rsplit("####", 1)[1].strip()
    return {
        "prompt": f"Question: {problem['question'].strip()}\nAnswer:",
        "completion": " " + solution.strip(),
        "answer": answer,
    }


def main(folder: Path) -> None:
    lines = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
    picked = sorted(random.Random(SEED).sample(range(len(lines)), TRAIN + VALIDATION))
    rows = [row(json.loads(lines[i])) for i in picked]
    for name, part in (("train", rows[:TRAIN]), ("validation", rows[TRAIN:])):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        (HERE / f"gsm8k_{name}.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
