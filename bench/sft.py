"""This loop against TRL's `SFTTrainer` (what users pick today for supervised fine-tuning of
causal LMs) on causal-LM SFT, like for like: real tokens/s and peak memory on identical work.

Both sides fine-tune the same tiny Llama-architecture model (`trainables.tiny_lm`: 2 layers,
32 wide, random weights drawn with the same seed, its byte-level BPE tokenizer saved beside it)
on the same GSM8K rows (prompt: the question and a newline; completion: the worked answer),
with the same batch size, max length, learning rate, optimizer (AdamW, weight decay 0.01 off
norms and biases, gradient clipping at 1.0, a linear schedule without warm-up), CPU fp32, one
epoch, each run in a fresh process of its own with its threads pinned (`OMP_NUM_THREADS`,
`MKL_NUM_THREADS` and `torch.set_num_threads`, each side prints what it ran with). Only rows
whose prompt, completion and EOS fit in `max_length` are sampled, so neither side truncates or
drops a row (TRL drops a row whose prompt fills `max_length` unpacked, but keeps it packed).

- baseline: `trl.SFTTrainer` at its best settings for this job on CPU: completion-only loss
  (TRL 1.x's default for a prompt/completion dataset: `completion_only_loss=None` becomes
  `"prompt" in row and "completion" in row`, sft_trainer.py), its chunked log-prob LM head
  (`add_fused_lm_head`, always on), `gradient_checkpointing=False` and `bf16=False` (its
  defaults are True: recomputation costs time, and CPU fp32 is the loop's precision).
  Unpacked: padded batches grouped by length (`train_sampling_strategy="group_by_length"`,
  the sort windows the loop's grouping uses). Packed: `packing=True`, whose `bfd` strategy
  keeps example boundaries by going padding-free: a batch is one row of all its examples,
  with restarting `position_ids` (and flash-attention's `cu_seq_lens`, which sdpa ignores;
  transformers reads the restarting positions as a block-diagonal mask).
- this loop: `trainables.loop.train_fn_per_worker` with `task: causal_lm` as a one-worker
  sweep trial runs it (`trainables.in_process.run_in_process`), grouped by length (its
  default), unpacked and with `data.packing: true` (examples packed in order into rows of up
  to `max_length`, positions restarting per example, rows padded to the batch's longest).

The two packings differ: TRL packs best-fit decreasing into fewer rows than the loop's
in-order packing, and flattens a batch into one sequence; so the packed pair's steps differ
and only tokens/s compare. TRL's padding-free attention over a flattened batch is what its
docs reserve for FlashAttention; on CPU it runs through sdpa with a mask over the whole
batch's tokens, which is correct (the first-batch check shows it) but not what it is built
for.

Before timing, a fresh process checks, for each packing, that the two sides train on the
same thing: TRL's tokenized rows (ids and labels) equal the loop's, and on the loop's first
training batch the loop's loss (its task's `logits` and `loss`) and TRL's (its collator and
`compute_loss`, with the `num_items_in_batch` its trainer would pass) are equal to 1e-5, so
the masking (and, packed, the attention's example boundaries) is the same. Packed, TRL's
collator is given the loop's packed rows of those examples, TRL's own labels.

Timed: the optimizer steps after the first `--warmup`, on both sides (TRL by a callback's
clock at each step's end, the loop by its own step clock; its reports every `--warmup` steps,
the first one's window left out); evaluation and checkpoints are outside both clocks. Each
run prints its CPU share (`loop_throughput.Tally.cpu_share`). Work is counted from the
batches each side trained on in its timed steps (TRL: what its collator returned; the loop:
what its task's `batch` returned for training): real tokens (the examples' own tokens, not
padding), supervised tokens (labels the loss counts, after the shift), padded tokens (the
batch's shape) and examples. All runs must hold the same real and supervised tokens per
epoch, or the bench stops. Peak memory: the process's `ru_maxrss`, and (printed beside it)
its rise above the process's RSS at its first training batch.

`--reps` rounds run the four runs, each pair's order flipped every other round; a ratio is the
median of the rounds' own ratios (see `bench/loop_throughput.py`). The last line,
`ratio vs TRL SFTTrainer: <x>x real tokens/s, <y>x peak memory`, is the loop against TRL's
faster setting (by median real tokens/s), the loop packing as TRL does.

With `--step-parts` it only times one typical batch's forward and backward (`--reps` times,
in turn, one fresh process): the loop's, TRL's `compute_loss`, and TRL's model with
transformers' own loss, to show what TRL's chunked LM head costs apart from its trainer.

    .venv/bin/python -m bench.sft [--rows 512] [--reps 3] [--threads 2] [--warmup 5]
        [--data ../shared/data/gsm8k] [--step-parts]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loop_throughput import (
    HF_TRAIN_ONLY,
    Tally,
    describe,
    hf_timing,
    medians,
    one_epoch,
    paired_ratio,
    peak_rss_mb,
    round_ratios,
    run_loop_counted,
    run_side,
    step_clock,
    threads,
    timing_arguments,
)

BATCH_SIZE, MAX_LENGTH, SEED, LR = 8, 512, 0, 2e-4
ROWS, DEV_ROWS = 512, 16
ROOT = Path(__file__).resolve().parents[1]
#: Two losses on the same batch count as equal within this.
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Work:
    """What one training batch holds: examples, their own tokens, the tokens the loss counts
    (labels after the shift that are not ignored), and the batch's shape."""

    examples: int
    real: int
    supervised: int
    padded: int


def supervised_tokens(labels: Any) -> int:
    """Labels the next-token loss counts: each row's from its second on, not -100."""
    return int((labels[:, 1:] != -100).sum())


def loop_work(task: Any, split: str, rows: Sequence[int], batch: Mapping[str, Any]) -> Work:
    """A loop batch's work, from the task's stored rows (packed: each example starts at a
    position 0) and the batch it built."""
    packed = task.positions.get(split) if task.packing else None
    examples = sum(packed[r].count(0) for r in rows) if packed else len(rows)
    real = sum(len(task.ids[split][r]) for r in rows)
    return Work(examples, real, supervised_tokens(batch["labels"]), batch["input_ids"].numel())


def trl_work(features: Sequence[Mapping[str, Any]], batch: Mapping[str, Any]) -> Work:
    """A TRL batch's work, from the features its collator got (packed: `seq_lengths` lists
    each row's examples) and the batch it returned."""
    examples = sum(len(f.get("seq_lengths", [0])) for f in features)
    real = sum(len(f["input_ids"]) for f in features)
    return Work(examples, real, supervised_tokens(batch["labels"]), batch["input_ids"].numel())


class WorkTally(Tally):
    """`loop_throughput.Tally` counting SFT batches (its real tokens are the examples' own,
    not an attention mask's ones: packed and padding-free batches have none), and the
    supervised tokens and the RSS at the first batch beside."""

    def __init__(self) -> None:
        super().__init__()
        self.supervised: list[int] = []
        self.start_rss_mb = 0.0

    def add_work(self, work: Work) -> None:
        if not self.batches:
            self.start_rss_mb = current_rss_mb()
        self.batches.append((work.examples, work.real, work.padded))
        self.supervised.append(work.supervised)
        self.clocks.append((time.perf_counter(), time.process_time()))

    def result(
        self, first: int, seconds: float, steps: int, threads: int, **extra: Any
    ) -> dict[str, Any]:
        """The run's figures (`Tally.result`) with supervised tokens/s and memory."""
        supervised = sum(self.supervised[first:])
        return super().result(
            first,
            seconds,
            steps,
            threads,
            supervised_tokens_per_second=supervised / seconds,
            epoch_supervised_tokens=sum(self.supervised),
            rss_rise_mb=peak_rss_mb() - self.start_rss_mb,
            **extra,
        )


def current_rss_mb() -> float:
    """The process's resident memory now (Linux `/proc/self/statm`)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the data and the model -------------------------------------------------------------------


def sample_gsm8k(data_dir: Path, tokenizer: Any, rows: int, out: Path) -> tuple[str, str]:
    """Writes `rows` training and `DEV_ROWS` validation rows as JSONL (`prompt`: the question
    and a newline, `completion`: the answer), the first of a seeded shuffle of train.jsonl
    whose prompt, completion and EOS fit in `MAX_LENGTH` tokens."""
    import numpy as np

    lines = (data_dir / "train.jsonl").read_text().splitlines()
    picked: list[dict[str, str]] = []
    for i in np.random.default_rng(SEED).permutation(len(lines)):
        row = json.loads(lines[i])
        prompt, completion = row["question"] + "\n", row["answer"]
        n = len(tokenizer(prompt)["input_ids"])
        n += len(tokenizer(completion, add_special_tokens=False)["input_ids"]) + 1
        if n <= MAX_LENGTH:
            picked.append({"prompt": prompt, "completion": completion})
        if len(picked) == rows + DEV_ROWS:
            break
    if len(picked) < rows + DEV_ROWS:
        raise SystemExit(f"only {len(picked)} GSM8K rows fit in {MAX_LENGTH} tokens")
    train, dev = out / "train.jsonl", out / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in picked[:rows]))
    dev.write_text("".join(json.dumps(r) + "\n" for r in picked[rows:]))
    return str(train), str(dev)


def read_rows(path: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


# --- the loop's side ----------------------------------------------------------------------------


def loop_job(
    train: str, dev: str, model_dir: str, packing: bool, n_threads: int, eval_every: int
) -> dict[str, Any]:
    """The loop's job on the sampled rows, as a config mapping (what TRL's side is set to)."""
    shared = one_epoch(eval_every, n_threads, batch_size=BATCH_SIZE, lr=LR, seed=SEED)
    return {
        "task": "causal_lm",
        "model": {"name_or_path": model_dir},
        "data": {
            "train": train,
            "validation": dev,
            "prompt_column": "prompt",
            "completion_column": "completion",
            "max_length": MAX_LENGTH,
            "packing": packing,
        },
        **shared,
        "optimizer": {**shared["optimizer"], "max_grad_norm": 1.0},
        "training": {**shared["training"], "precision": "fp32"},
    }


def run_loop(
    train: str, dev: str, model_dir: str, packing: bool, n_threads: int, warmup: int
) -> dict[str, Any]:
    """This project's loop in this (fresh) process, as a one-worker sweep trial runs it."""
    pinned = threads(n_threads)
    from trainables.config import parse_config
    from trainables.tasks.causal_lm import CausalLmTask

    tally = WorkTally()
    cfg = parse_config(loop_job(train, dev, model_dir, packing, n_threads, warmup))

    def count(task: Any, split: str, rows: Sequence[int], batch: dict[str, Any]) -> None:
        tally.add_work(loop_work(task, split, rows, batch))

    seconds, steps = run_loop_counted(cfg, CausalLmTask, count, tally, warmup)
    return tally.result(warmup, seconds, steps, n_threads, **pinned)


# --- TRL's side ---------------------------------------------------------------------------------


def trl_trainer(
    train: str,
    model_dir: str,
    packing: bool,
    completion_only_loss: bool | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """`trl.SFTTrainer` on the sampled rows at its best settings for this job (see the module
    docstring); `completion_only_loss` left to TRL's default unless given (a control)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-sft-"),
        per_device_train_batch_size=BATCH_SIZE,
        num_train_epochs=1,
        learning_rate=LR,
        weight_decay=0.01,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        warmup_steps=0,
        optim="adamw_torch_fused",
        seed=SEED,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # TRL defaults it on (gradient_checkpointing)
        max_length=MAX_LENGTH,
        packing=packing,
        completion_only_loss=completion_only_loss,
        # Padded batches: sort by length in HF's windows (the loop's); padding-free packed
        # batches have no padding to save.
        train_sampling_strategy="random" if packing else "group_by_length",
        **HF_TRAIN_ONLY,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(read_rows(train)),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=list(callbacks),
    )


def run_trl(train: str, model_dir: str, packing: bool, n_threads: int, warmup: int) -> dict:
    """The baseline: TRL's `SFTTrainer` in this (fresh) process."""
    pinned = threads(n_threads)
    ends: list[float] = []
    trainer = trl_trainer(train, model_dir, packing, callbacks=[step_clock(ends)])
    tally = WorkTally()
    collate = trainer.data_collator  # TRL refuses a collator of ours with padding-free

    def counting(features: list[dict[str, Any]]) -> Any:
        """TRL's collator, each batch it returns tallied (one per step: no accumulation)."""
        batch = collate(features)
        tally.add_work(trl_work(features, batch))
        return batch

    trainer.data_collator = counting
    trainer.train()
    seconds, steps = hf_timing(ends, tally, warmup)
    return tally.result(warmup, seconds, steps, n_threads, **pinned)


# --- the check before timing ------------------------------------------------------------------


def first_batch_losses(
    train: str,
    dev: str,
    model_dir: str,
    packing: bool,
    completion_only_loss: bool | None = None,
    cross_examples: bool = False,
) -> dict[str, Any]:
    """Both sides' losses and work on the loop's first training batch, each by its own code,
    and the indices of the batch's examples in the train file.

    The loop: its task's batch, `logits` and `loss`. TRL: its collator on the same examples
    (packed: the loop's packed rows, with `seq_lengths`), then `compute_loss` with the
    `num_items_in_batch` its trainer counts. Raises if TRL's tokenized rows (ids, labels)
    differ from the loop's. Controls: `completion_only_loss=False` has TRL learn the prompt
    too; `cross_examples` collates TRL's packed rows with an attention mask of ones and no
    `position_ids`, so attention crosses examples.
    """
    import numpy as np
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from trainables.config import parse_config
    from trainables.data import epoch_batches
    from trainables.tasks.causal_lm import prepare

    cfg = parse_config(loop_job(train, dev, model_dir, packing, 1, 1))
    task = prepare(cfg)
    lengths = task.lengths("train")
    assert lengths is not None
    rows = epoch_batches(lengths, BATCH_SIZE, 1, 0, SEED, 0, cfg.data.group_by_length)[0]
    batch = task.batch("train", rows, train=True)
    loop_counted = loop_work(task, "train", rows, batch)
    torch.manual_seed(SEED)
    model = task.build_model(cfg.model).train()
    labels = batch.pop("labels")
    with torch.no_grad():
        loop_loss = float(task.loss(task.logits(model, batch).float(), labels))

    # TRL's own tokenization of every row, unpacked: the same examples as the loop's.
    unpacked = trl_trainer(train, model_dir, False, completion_only_loss).train_dataset
    trl_ids, trl_labels = unpacked["input_ids"], unpacked["labels"]
    if packing:
        unpacked_task = prepare(parse_config(loop_job(train, dev, model_dir, False, 1, 1)))
        loop_ids, loop_labels = unpacked_task.ids["train"], unpacked_task.labels["train"]
    else:
        loop_ids, loop_labels = task.ids["train"], task.labels["train"]
    if trl_ids != loop_ids:
        raise RuntimeError("TRL tokenized the rows into other ids than the loop")
    if trl_labels != loop_labels and completion_only_loss is not False:
        raise RuntimeError("TRL's labels (what it learns) differ from the loop's")

    trainer = trl_trainer(train, model_dir, packing, completion_only_loss)
    if packing:
        # Example k of the packed split is example k of the unpacked one (packed in order).
        starts = np.cumsum([0] + [task.positions["train"][r].count(0) for r in range(max(rows))])
        features: list[dict[str, Any]] = []
        examples: list[int] = []
        for r in rows:
            held = range(starts[r], starts[r] + task.positions["train"][r].count(0))
            examples += held
            features.append(
                {
                    "input_ids": [t for e in held for t in trl_ids[e]],
                    "labels": [t for e in held for t in trl_labels[e]],
                    "seq_lengths": [len(trl_ids[e]) for e in held],
                }
            )
    else:
        features = [{"input_ids": trl_ids[r], "labels": trl_labels[r]} for r in rows]
        examples = list(rows)
    collate = trainer.data_collator
    if cross_examples:
        collate = DataCollatorForLanguageModeling(pad_token_id=collate.pad_token_id)
        features = [{k: f[k] for k in ("input_ids", "labels")} for f in features]
    inputs = collate(features)
    trl_counted = trl_work(features, inputs)
    trainer.model.train()
    num_items = trainer._get_num_items_in_batch([inputs], torch.device("cpu"))
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(trainer.model, inputs, num_items_in_batch=num_items))
    return {
        "loop_loss": loop_loss,
        "trl_loss": trl_loss,
        "loop_work": loop_counted,
        "trl_work": trl_counted,
        "examples": [int(e) for e in examples],
    }


def check(train: str, dev: str, model_dir: str, packing: bool, **controls: Any) -> dict[str, Any]:
    """Prints both first-batch losses (`first_batch_losses`, `controls` passed on) and stops
    unless they are equal to `TOLERANCE` and the batch's real and supervised tokens agree."""
    got = first_batch_losses(train, dev, model_dir, packing, **controls)
    loop_loss, trl_loss = got["loop_loss"], got["trl_loss"]
    what = "packed" if packing else "unpacked"
    got["printed"] = (
        f"first batch, {what}: loop loss {loop_loss:.8f}, TRL loss {trl_loss:.8f} "
        f"(|diff| {abs(loop_loss - trl_loss):.2e}); loop {got['loop_work']}, TRL {got['trl_work']}"
    )
    print(got["printed"], flush=True)
    if abs(loop_loss - trl_loss) > TOLERANCE:
        raise SystemExit(
            f"{what}: the two sides' losses on the same first batch differ by more than "
            f"{TOLERANCE}: loop {loop_loss!r}, TRL {trl_loss!r}; their masking or attention "
            f"differs, so the comparison would not be of the same work"
        )
    ours, theirs = got["loop_work"], got["trl_work"]
    if [ours.examples, ours.real, ours.supervised] != [
        theirs.examples,
        theirs.real,
        theirs.supervised,
    ]:
        raise SystemExit(f"{what}: the first batch's work differs: loop {ours}, TRL {theirs}")
    return got


def check_same_work(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Stops unless every run so far trained on the same real and supervised tokens an epoch
    (every run holds the same examples, however batched or packed)."""
    for key in ("epoch_real_tokens", "epoch_supervised_tokens"):
        seen = {run[key] for runs in results.values() for run in runs}
        if len(seen) > 1:
            raise SystemExit(f"the runs trained on different {key} an epoch: {sorted(seen)}")


def step_parts(train: str, dev: str, model_dir: str, n_threads: int, reps: int) -> dict:
    """Forward and backward of one typical training batch (the loop's unpacked epoch's middle
    batch), timed `reps` times in turn, medians in ms: the loop's (its task's `logits` and
    `loss`), TRL's (`compute_loss`: its chunked log-prob LM head, with the entropy and
    accuracy it logs), and TRL's model with transformers' own loss (`labels` to the model:
    full logits, cross-entropy), so the head's cost is seen apart from the trainer's."""
    import torch

    from trainables.config import parse_config
    from trainables.data import epoch_batches
    from trainables.tasks.causal_lm import prepare

    pinned = threads(n_threads)
    cfg = parse_config(loop_job(train, dev, model_dir, False, n_threads, 1))
    task = prepare(cfg)
    lengths = task.lengths("train")
    assert lengths is not None
    plan = epoch_batches(lengths, BATCH_SIZE, 1, 0, SEED, 0, cfg.data.group_by_length)
    rows = plan[len(plan) // 2]
    batch = task.batch("train", rows, train=True)
    labels = batch.pop("labels")
    model = task.build_model(cfg.model).train()
    trainer = trl_trainer(train, model_dir, False)
    inputs = trainer.data_collator([trainer.train_dataset[r] for r in rows])
    num_items = trainer._get_num_items_in_batch([inputs], torch.device("cpu"))
    theirs = trainer.model.train()

    def loop_step() -> None:
        task.loss(task.logits(model, batch).float(), labels).backward()
        model.zero_grad()

    def trl_step() -> None:
        trainer.compute_loss(theirs, dict(inputs), num_items_in_batch=num_items).backward()
        theirs.zero_grad()

    def plain_loss_step() -> None:
        theirs(**inputs, use_cache=False).loss.backward()
        theirs.zero_grad()

    parts = {
        "loop: logits + loss": loop_step,
        "TRL: compute_loss (chunked head)": trl_step,
        "TRL's model, transformers' loss": plain_loss_step,
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(2):  # warm-up
        for step in parts.values():
            step()
    for _ in range(reps):
        for name, step in parts.items():
            tick = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - tick)
    return {
        "batch": list(batch["input_ids"].shape),
        "ms": {name: 1000 * statistics.median(t) for name, t in times.items()},
        **pinned,
    }


# --- the driver ---------------------------------------------------------------------------------

TRL, LOOP = "TRL SFTTrainer, group_by_length", "trainables loop (default, grouped)"
TRL_PACKED, LOOP_PACKED = "TRL SFTTrainer, packing (bfd)", "trainables loop, data.packing"
PAIRS = ((TRL, LOOP), (TRL_PACKED, LOOP_PACKED))
RUNS = {  # name: (side, packing)
    TRL: ("trl", False),
    LOOP: ("loop", False),
    TRL_PACKED: ("trl", True),
    LOOP_PACKED: ("loop", True),
}
MEASURES = (
    "real_tokens_per_second",
    "supervised_tokens_per_second",
    "padded_tokens_per_second",
    "padding",
    "samples_per_second",
    "peak_rss_mb",
    "rss_rise_mb",
    "steps",
)


def side_command(args: argparse.Namespace, side: str, packing: bool, paths: dict[str, str]) -> list:
    command = [sys.executable, "-m", "bench.sft", "--side", side, "--threads", str(args.threads)]
    command += ["--warmup", str(args.warmup)] + (["--packing"] if packing else [])
    return command + [f"--{k}={v}" for k, v in paths.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    timing_arguments(parser, ROWS, warmup=5)
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "gsm8k"),
    )
    parser.add_argument(
        "--step-parts",
        action="store_true",
        help="only time one batch's forward and backward, loop vs TRL (see step_parts)",
    )
    parser.add_argument("--side", choices=["trl", "loop", "check", "parts"], help=argparse.SUPPRESS)
    parser.add_argument("--packing", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("train", "dev", "model"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "check":
        got = check(args.train, args.dev, args.model, args.packing)
        print(json.dumps({"printed": got["printed"]}))
        return
    if args.side == "parts":
        print(json.dumps(step_parts(args.train, args.dev, args.model, args.threads, args.reps)))
        return
    if args.side == "trl":
        print(json.dumps(run_trl(args.train, args.model, args.packing, args.threads, args.warmup)))
        return
    if args.side == "loop":
        run = run_loop(args.train, args.dev, args.model, args.packing, args.threads, args.warmup)
        print(json.dumps(run))
        return

    from transformers import AutoTokenizer

    from trainables.tiny_lm import build_tiny_causal_lm

    work = Path(tempfile.mkdtemp(prefix="sft-bench-"))
    model_dir = build_tiny_causal_lm(work / "model", "llama", seed=SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train, dev = sample_gsm8k(Path(args.data), tokenizer, args.rows, work)
    paths = {"train": train, "dev": dev, "model": model_dir}
    print(
        f"GSM8K sample: {args.rows} rows (whole examples within {MAX_LENGTH} tokens), tiny "
        f"Llama (trainables.tiny_lm, seed {SEED}), batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"lr {LR}, 1 process x {args.threads} threads, CPU fp32, first {args.warmup} steps "
        f"untimed, {args.reps} {'repetitions' if args.step_parts else 'alternating rounds'}",
        flush=True,
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if args.step_parts:
        command = [*side_command(args, "parts", False, paths), "--reps", str(args.reps)]
        parts = run_side(command, env, "the step parts")
        print(f"forward + backward of one {parts['batch']} batch, median of {args.reps}:")
        for name, ms in parts["ms"].items():
            print(f"{name:36s} {ms:6.1f} ms")
        return
    for packing in (False, True):
        command = side_command(args, "check", packing, paths)
        print(run_side(command, env, "the first-batch check")["printed"], flush=True)

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    for rep in range(args.reps):
        for pair in PAIRS:
            for name in pair if rep % 2 == 0 else reversed(pair):
                side, packing = RUNS[name]
                run = run_side(side_command(args, side, packing, paths), env, name)
                results[name].append(run)
                print(
                    f"round {rep + 1} {name:36s} {describe(run)} rise {run['rss_rise_mb']:4.0f} MB "
                    f"CPU share {run['cpu_share']:.2f} ({run['steps']} steps, torch threads "
                    f"{run['torch_threads']}, OMP {run['OMP_NUM_THREADS']}, MKL "
                    f"{run['MKL_NUM_THREADS']})",
                    flush=True,
                )
                check_same_work(results)

    median = medians(results, MEASURES)
    first = results[TRL][0]
    print(
        f"\nmedians of {args.reps} rounds ({first['epoch_real_tokens']} real tokens, "
        f"{first['epoch_supervised_tokens']} supervised, an epoch on every run):"
    )
    for name, m in median.items():
        print(
            f"{name:36s} {describe(m)}   {m['supervised_tokens_per_second']:7.0f} supervised "
            f"tok/s   rise {m['rss_rise_mb']:4.0f} MB   {m['steps']:.0f} steps"
        )

    def paired(ours: str, theirs: str, measure: str) -> float:
        return paired_ratio(results, ours, theirs, measure)

    for theirs, ours in PAIRS:
        per_round = ", ".join(
            f"{x:.2f}x" for x in round_ratios(results, ours, theirs, "real_tokens_per_second")
        )
        print(
            f"{ours} / {theirs}: {paired(ours, theirs, 'real_tokens_per_second'):.2f}x real "
            f"tokens/s (per round {per_round}), {paired(ours, theirs, 'peak_rss_mb'):.2f}x peak "
            f"memory, {paired(ours, theirs, 'rss_rise_mb'):.2f}x memory rise in training"
        )
    theirs, ours = max(PAIRS, key=lambda p: median[p[0]]["real_tokens_per_second"])
    print(f"TRL's faster setting: {theirs}; against it: {ours}")
    print(
        f"ratio vs TRL SFTTrainer: {paired(ours, theirs, 'real_tokens_per_second'):.2f}x real "
        f"tokens/s, {paired(ours, theirs, 'peak_rss_mb'):.2f}x peak memory"
    )


if __name__ == "__main__":
    main()
