"""What a sweep buys, measured (issue 27 part 8): per task, HF `Trainer` at its example
script's defaults against a `sweeps run` of the same training compute, on the same model, rows
and held-out split.

Tasks and held-out figures (the shared data, `../shared/data`):

- STS-B (regression): dev Spearman. Dev is STS-B's only labelled held-out split, so the sweep
  selects on a validation split carved from train (disjoint from the training rows) and dev is
  only ever scored, never selected on.
- GoEmotions (multi-label, 28 labels): test macro F1 at the decision threshold (HF: logit > 0,
  probability 0.5, as its text-classification example scores multi-label; the sweep: its
  searched `training.threshold`). The sweep selects on rows of dev.
- WNUT-17 (NER): test entity F1 (seqeval, exact span and type). The sweep selects on rows of
  dev.

(a) HF Trainer with its example scripts' documented settings, on the embedded
all-MiniLM-L6-v2: `run_glue`'s README command (STS-B, and GoEmotions as a GLUE-style
classification): learning rate 2e-5, batch 32, 3 epochs, max_seq_length 128; `run_ner`'s
README command gives no hyperparameters, so `TrainingArguments`' defaults: learning rate 5e-5,
batch 8, 3 epochs (sequences truncated at 128 pieces here, as run_ner's tokenizer call does at
the model's maximum). Seed 42, no evaluation during training, no selection: it trains and is
scored once on the held-out split, as the scripts do.

(b) `sweeps run` (the CLI, in a process of its own) of `--trials` trials (TPE over the
learning rate, and the threshold for GoEmotions), one at a time on the same threads, each for
`max_steps` at the same batch size as (a), so that the trials together train on at most the
rows (a) trains on: work is counted in training rows processed (forward + backward of one
row), both sides; evaluations are not counted on either side (the sweep's validation passes are
printed beside). The sweep's best checkpoint by validation is promoted; its held-out figure is
the manifest's test metric (the product's metric code, tested equal to scipy / scikit-learn /
seqeval). (a)'s figure is computed here with scipy, scikit-learn and seqeval.

Rows are reduced to fit about 20 minutes on 2 cores (`--rows` training rows per task, seeded
sample; `--val-rows` for the sweep's validation: at 2,000 and 500, STS-B alone took 11.4
minutes on the 2-core AMD EPYC machine, 315 s for HF and 369 s for the sweep); the held-out
splits are whole unless `--test-rows` samples them (a smoke run). Wall-clock seconds of each
side are printed (the sweep's include Ray's start and its evaluations). Last line:
`sweep vs HF example defaults: +A spearman, +B macro F1, +C entity F1` (sweep minus HF).

    .venv/bin/python bench/tasks.py [--rows 1000] [--val-rows 300] [--test-rows N] [--trials 4]
        [--threads 2] [--tasks stsb goemotions wnut17] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "embedded:all-MiniLM-L6-v2"
SEED, MAX_LENGTH, EPOCHS = 42, 128, 3
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class TaskBench:
    """One task's two sides: HF's example settings and what the sweep searches."""

    name: str
    held_out: str  # the manifest's test metric
    label: str  # its words on the last line
    hf_lr: float
    hf_batch: int
    search_metric: str
    space: dict[str, Any]


TASKS = {
    "stsb": TaskBench(
        "stsb",
        "test_spearman",
        "spearman",
        2e-5,
        32,
        "val_spearman",
        {"optimizer.lr": {"loguniform": [1e-5, 5e-4]}},
    ),
    "goemotions": TaskBench(
        "goemotions",
        "test_f1_macro",
        "macro F1",
        2e-5,
        32,
        "val_f1_macro",
        {
            "optimizer.lr": {"loguniform": [1e-5, 5e-4]},
            "training.threshold": {"choice": [0.2, 0.3, 0.5]},
        },
    ),
    "wnut17": TaskBench(
        "wnut17",
        "test_f1_entity",
        "entity F1",
        5e-5,
        8,
        "val_f1_entity",
        {"optimizer.lr": {"loguniform": [1e-5, 5e-4]}},
    ),
}


# ----------------------------------------------------------------------------- data


def _sample(items: list[Any], n: int, rng: random.Random) -> list[Any]:
    return items if n >= len(items) else rng.sample(items, n)


def stsb_files(data: Path, out: Path, rows: int, val_rows: int, test_rows: int) -> dict[str, Any]:
    """train / validation (both from train.tsv, disjoint) / test (= dev.tsv) as CSV."""

    def read(path: Path) -> list[tuple[str, str, float]]:
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        fields = [line.split("\t") for line in lines]
        return [(f[7], f[8], float(f[9])) for f in fields if len(f) == 10]

    rng = random.Random(SEED)
    train = read(data / "stsb" / "train.tsv")
    rng.shuffle(train)
    splits = {
        "train": train[:rows],
        "validation": train[rows : rows + val_rows],
        "test": _sample(read(data / "stsb" / "dev.tsv"), test_rows, rng),
    }
    files = {}
    for name, split in splits.items():
        path = out / f"stsb_{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["sentence1", "sentence2", "score"])
            writer.writerows(split)
        files[name] = str(path)
    data_section = {
        **files,
        "text_column": "sentence1",
        "text_pair_column": "sentence2",
        "label_column": "score",
    }
    return {"task": "regression", "data": data_section, "rows": _counts(splits)}


def goemotions_files(
    data: Path, out: Path, rows: int, val_rows: int, test_rows: int
) -> dict[str, Any]:
    """Sampled train and validation (of dev) lines, the whole test file, verbatim TSV."""
    rng = random.Random(SEED)
    source = data / "goemotions"
    splits: dict[str, list[str]] = {}
    header = ""
    for name, file, n in (
        ("train", "train.tsv", rows),
        ("validation", "dev.tsv", val_rows),
        ("test", "test.tsv", test_rows),
    ):
        lines = (source / file).read_text(encoding="utf-8").splitlines()
        header = lines[0]
        splits[name] = _sample(lines[1:], n, rng)
    files = {}
    for name, lines in splits.items():
        path = out / f"goemotions_{name}.tsv"
        path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
        files[name] = str(path)
    names = (source / "labels.txt").read_text(encoding="utf-8").split()
    data_section = {
        **files,
        "text_column": "text",
        "label_column": "label",
        "label_separator": ",",
        "label_names": names,
    }
    return {"task": "multi_label", "data": data_section, "rows": _counts(splits)}


def read_conll(path: Path) -> list[list[tuple[str, str]]]:
    """Sentences of (word, tag); blank (or whitespace-only) lines end a sentence."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            if current:
                sentences.append(current)
            current = []
        elif parts[0] != "-DOCSTART-":
            current.append((parts[0], parts[-1]))
    if current:
        sentences.append(current)
    return sentences


def wnut_files(data: Path, out: Path, rows: int, val_rows: int, test_rows: int) -> dict[str, Any]:
    """Sampled train and validation (of dev) sentences, the whole test set, as CoNLL."""
    rng = random.Random(SEED)
    source = data / "wnut17"
    splits = {
        "train": _sample(read_conll(source / "wnut17train.conll"), rows, rng),
        "validation": _sample(read_conll(source / "emerging.dev.conll"), val_rows, rng),
        "test": _sample(read_conll(source / "emerging.test.annotated"), test_rows, rng),
    }
    files = {}
    for name, sentences in splits.items():
        path = out / f"wnut17_{name}.conll"
        blocks = ["\n".join(f"{w}\t{t}" for w, t in s) for s in sentences]
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
        files[name] = str(path)
    return {
        "task": "token_classification",
        "data": {**files, "format": "conll"},
        "rows": _counts(splits),
    }


def _counts(splits: dict[str, list[Any]]) -> dict[str, int]:
    return {name: len(rows) for name, rows in splits.items()}


MAKERS = {"stsb": stsb_files, "goemotions": goemotions_files, "wnut17": wnut_files}


# ----------------------------------------------------------------------------- (a) HF Trainer


def hf_side(task: str, job: dict[str, Any], threads: int, out: str) -> dict[str, Any]:
    """HF Trainer at the example script's settings, in this (fresh) process; the held-out
    figure computed with scipy / scikit-learn / seqeval."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from trainables.models import resolve_model_path

    torch.set_num_threads(threads)
    bench = TASKS[task]
    data = job["data"]
    path = resolve_model_path(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)

    if task == "stsb":
        splits = {k: _read_csv(data[k]) for k in ("train", "test")}
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, problem_type="regression"
        )

        def rows_of(split: list[dict[str, str]]) -> list[dict[str, Any]]:
            enc = tokenizer(
                [r["sentence1"] for r in split],
                [r["sentence2"] for r in split],
                truncation=True,
                max_length=MAX_LENGTH,
            )
            return [
                {**{k: enc[k][i] for k in enc}, "labels": float(r["score"])}
                for i, r in enumerate(split)
            ]

        collator: Any = DataCollatorWithPadding(tokenizer)
        train, test = rows_of(splits["train"]), rows_of(splits["test"])
    elif task == "goemotions":
        names = data["label_names"]
        splits_g = {k: _read_goemotions(data[k]) for k in ("train", "test")}
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(names), problem_type="multi_label_classification"
        )

        def rows_of_g(split: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
            enc = tokenizer([t for t, _ in split], truncation=True, max_length=MAX_LENGTH)
            out = []
            for i, (_, ids) in enumerate(split):
                hot = [0.0] * len(names)
                for j in ids:
                    hot[j] = 1.0
                out.append({**{k: enc[k][i] for k in enc}, "labels": hot})
            return out

        collator = DataCollatorWithPadding(tokenizer)
        train, test = rows_of_g(splits_g["train"]), rows_of_g(splits_g["test"])
        gold_g = np.array([r["labels"] for r in test]) > 0.5
    else:
        sentences = {k: read_conll(Path(data[k])) for k in ("train", "test")}
        tags = sorted({t for s in sentences["train"] for _, t in s} | {"O"})
        tags += sorted({t for s in sentences["test"] for _, t in s} - set(tags))
        index = {t: i for i, t in enumerate(tags)}
        model = AutoModelForTokenClassification.from_pretrained(
            path,
            num_labels=len(tags),
            id2label=dict(enumerate(tags)),
            label2id=index,
        )

        def rows_of_t(split: list[list[tuple[str, str]]]) -> list[dict[str, Any]]:
            words = [[w for w, _ in s] for s in split]
            enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
            out = []
            for i, s in enumerate(split):
                labels, seen = [], set()
                for w in enc.word_ids(i):
                    # run_ner's default: the first piece of a word labelled, the rest ignored.
                    labels.append(-100 if w is None or w in seen else index[s[w][1]])
                    if w is not None:
                        seen.add(w)
                out.append({**{k: enc[k][i] for k in enc}, "labels": labels})
            return out

        collator = DataCollatorForTokenClassification(tokenizer)
        train, test = rows_of_t(sentences["train"]), rows_of_t(sentences["test"])
        word_ids = [
            tokenizer(
                [w for w, _ in s], is_split_into_words=True, truncation=True, max_length=MAX_LENGTH
            ).word_ids()
            for s in sentences["test"]
        ]

    args = TrainingArguments(
        output_dir=out,
        learning_rate=bench.hf_lr,
        per_device_train_batch_size=bench.hf_batch,
        per_device_eval_batch_size=64,
        num_train_epochs=EPOCHS,
        seed=SEED,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    started = time.perf_counter()
    trained = trainer.train()
    train_s = time.perf_counter() - started
    predictions = trainer.predict(test).predictions
    seconds = time.perf_counter() - started

    if task == "stsb":
        from scipy.stats import spearmanr

        gold = [float(r["score"]) for r in splits["test"]]
        figure = float(spearmanr(np.asarray(predictions).reshape(-1), gold).statistic)
    elif task == "goemotions":
        from sklearn.metrics import f1_score

        predicted = np.asarray(predictions) > 0.0  # sigmoid >= 0.5
        figure = float(f1_score(gold_g, predicted, average="macro", zero_division=0))
    else:
        from seqeval.metrics import f1_score as entity_f1

        best = np.asarray(predictions).argmax(-1)
        gold_t, predicted_t = [], []
        for i, s in enumerate(sentences["test"]):
            words = ["O"] * len(s)  # a word cut off by truncation is tagged O
            seen: set[int] = set()
            for piece, w in enumerate(word_ids[i]):
                if w is not None and w not in seen:
                    seen.add(w)
                    words[w] = tags[int(best[i][piece])]
            gold_t.append([t for _, t in s])
            predicted_t.append(words)
        figure = float(entity_f1(gold_t, predicted_t))
    return {
        "figure": figure,
        "train_rows": EPOCHS * len(train),
        "steps": int(trained.global_step),
        "train_seconds": train_s,
        "seconds": seconds,
    }


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_goemotions(path: str) -> list[tuple[str, list[int]]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for line in lines:
        text, labels, _ = line.rsplit("\t", 2)
        rows.append((text, [int(x) for x in labels.split(",")]))
    return rows


# ----------------------------------------------------------------------------- (b) the sweep


def sweep_spec(task: str, job: dict[str, Any], folder: Path, trials: int, threads: int) -> dict:
    """A sweep whose trials together train on at most (a)'s rows: `trials` x `max_steps` x
    batch <= epochs x training rows."""
    bench = TASKS[task]
    budget = EPOCHS * job["rows"]["train"]
    steps = budget // (trials * bench.hf_batch)
    return {
        "name": f"bench-{task}",
        "storage_path": str(folder / "sweeps"),
        "job": {
            "task": job["task"],
            "model": {"name_or_path": MODEL},
            "data": {**job["data"], "max_length": MAX_LENGTH},
            "training": {
                "batch_size": bench.hf_batch,
                "max_steps": steps,
                "eval_every": max(1, steps // 3),
                "monitor": bench.search_metric,
                "seed": SEED,
            },
            "scaling": {"num_workers": 1, "cpus_per_worker": threads},
        },
        "search": {
            "method": "tpe",
            "metric": bench.search_metric,
            "num_samples": trials,
            "seed": 0,
            "space": bench.space,
        },
        "promote": {"to": str(folder / "models")},
    }


def sweep_side(task: str, job: dict[str, Any], folder: Path, trials: int, threads: int) -> dict:
    """`sweeps run` of the spec in a process of its own; the promoted model's held-out figure
    and the rows its trials trained on (from the results file)."""
    import pyarrow.parquet as pq

    spec = sweep_spec(task, job, folder, trials, threads)
    spec_path = folder / f"{task}.json"
    spec_path.write_text(json.dumps(spec))
    sweeps = str(Path(sys.executable).with_name("sweeps"))
    started = time.perf_counter()
    run = subprocess.run(
        [sweeps, "run", str(spec_path)], capture_output=True, text=True, cwd=REPO, check=False
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(
            f"sweeps run failed for {task}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    shown = [line for line in run.stdout.splitlines() if "trivial" in line or "learned" in line]
    manifest = json.loads(
        (folder / "models" / spec["name"] / "latest" / "manifest.json").read_text()
    )
    table = pq.read_table(folder / "sweeps" / spec["name"] / "results.parquet").to_pylist()
    last: dict[str, int] = {}
    for row in table:
        last[row["trial_id"]] = max(last.get(row["trial_id"], 0), int(row.get("step") or 0))
    batch = spec["job"]["training"]["batch_size"]
    evals = sum(s // spec["job"]["training"]["eval_every"] for s in last.values())
    return {
        "figure": float(manifest["test_metrics"][TASKS[task].held_out]),
        "validation": manifest["metrics"].get(TASKS[task].search_metric),
        "train_rows": sum(last.values()) * batch,
        "trials": len(last),
        "max_steps": spec["job"]["training"]["max_steps"],
        "validation_rows_evaluated": evals * job["rows"]["validation"],
        "hyperparameters": manifest["hyperparameters"],
        "trivial": manifest.get("trivial_predictor", {}).get("comparison"),
        "lines": shown,
        "seconds": seconds,
    }


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="training rows per task")
    parser.add_argument("--val-rows", type=int, default=300, help="the sweep's validation rows")
    parser.add_argument(
        "--test-rows", type=int, default=10**9, help="held-out rows (default: the whole split)"
    )
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--hf-side", help=argparse.SUPPRESS)  # internal: one HF run
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.hf_side:
        with tempfile.TemporaryDirectory(prefix="hf-") as out:
            result = hf_side(args.hf_side, json.loads(args.job), args.threads, out)
        print("RESULT " + json.dumps(result))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    held_out = "whole" if args.test_rows >= 10**9 else f"sampled to {args.test_rows} rows"
    print(
        f"bench/tasks.py: {args.rows} training rows per task (seeded sample), sweep validation "
        f"{args.val_rows} rows, {args.trials} trials, {args.threads} threads, held-out splits "
        f"{held_out}; units of work: training rows processed (forward + backward of one row)"
    )
    differences: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        for task in args.tasks:
            folder = Path(tmp) / task
            folder.mkdir()
            job = MAKERS[task](Path(args.data), folder, args.rows, args.val_rows, args.test_rows)
            bench = TASKS[task]
            hf_run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--hf-side",
                    task,
                    "--job",
                    json.dumps(job),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                env=env,
                cwd=REPO,
                check=False,
            )
            results = [ln for ln in hf_run.stdout.splitlines() if ln.startswith("RESULT ")]
            if hf_run.returncode != 0 or not results:
                raise SystemExit(f"HF side failed for {task}:\n{hf_run.stderr[-3000:]}")
            hf = json.loads(results[-1].removeprefix("RESULT "))
            sweep = sweep_side(task, job, folder, args.trials, args.threads)
            diff = sweep["figure"] - hf["figure"]
            differences[task] = diff
            print(f"\n{task} (rows {job['rows']}):")
            print(
                f"  HF Trainer (lr {bench.hf_lr:g}, batch {bench.hf_batch}, {EPOCHS} epochs): "
                f"{bench.held_out} {hf['figure']:.4f}; {hf['train_rows']} training rows, "
                f"{hf['train_seconds']:.0f} s training, {hf['seconds']:.0f} s with scoring"
            )
            print(
                f"  sweeps run ({sweep['trials']} trials x {sweep['max_steps']} steps x batch "
                f"{bench.hf_batch}): {bench.held_out} {sweep['figure']:.4f} (selected on "
                f"{bench.search_metric} {sweep['validation']:.4f}); {sweep['train_rows']} "
                f"training rows, {sweep['validation_rows_evaluated']} validation rows "
                f"evaluated, {sweep['seconds']:.0f} s wall (Ray start, evaluations, promotion "
                f"included); best {json.dumps(sweep['hyperparameters'], sort_keys=True)}"
            )
            if sweep["trivial"]:
                print(f"  trivial predictor: {json.dumps(sweep['trivial'], sort_keys=True)}")
            print(f"  difference (sweep - HF): {diff:+.4f}")
            if sweep["train_rows"] > hf["train_rows"]:
                raise SystemExit(f"{task}: the sweep trained on more rows than HF")
    parts = {"stsb": "spearman", "goemotions": "macro F1", "wnut17": "entity F1"}
    shown = ", ".join(
        f"{differences[t]:+.3f} {parts[t]}" if t in differences else f"n/a {parts[t]}"
        for t in TASKS
    )
    print(f"sweep vs HF example defaults: {shown}")


if __name__ == "__main__":
    main()
