"""Generation metrics of `task: causal_lm` (`training.eval_generate_rows`): greedy generation
on a few validation rows scored by exact match and normalised containment against a
reference (`val_exact_match`, `val_contains`), without Ray.

Expected figures come from outside the code under test: scores worked out by hand on fixed
strings, and a tiny Llama trained to memorise its rows (through the real loop, in process)
whose greedy continuations are read here with transformers' own `generate`.
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from sweeps.errors import SpecError
from sweeps.spec import parse_spec
from tests import gloo_ranks
from tests.trainables.tasks.test_ner_reduction import free_port
from trainables.config import FinetuneConfig, parse_config
from trainables.errors import ConfigError, DataError
from trainables.loop import task_eval_iter
from trainables.metrics import evaluate
from trainables.preflight import check_inputs
from trainables.reporting import natural_mode
from trainables.sft_generation import contains, exact_match, normalise
from trainables.tasks import prepare_task
from trainables.tiny_lm import build_tiny_causal_lm

CPU = torch.device("cpu")

#: Prompts and completions the memorising run learns (completions start with their space).
PAIRS = [
    ("what is the sea", " calm and blue"),
    ("who sat on the mat", " a cat"),
    ("how many ships sail north", " two"),
    ("where is the moon", " past the old tree"),
]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama") / "llama", "llama")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def job(
    model: str, train: str, data: dict[str, Any], training: dict[str, Any], **sections: Any
) -> FinetuneConfig:
    return parse_config(
        {
            "task": "causal_lm",
            "model": {"name_or_path": model},
            "data": {"train": train, "validation": train, "max_length": 32, **data},
            "training": training,
            **sections,
        }
    )


PAIR_COLUMNS = {"prompt_column": "p", "completion_column": "c"}


# ------------------------------------------------------------------------ scoring, by hand


# (generation, reference, exact match, contains), each worked out by hand; the last column
# names the mistaken scoring the row catches.
SCORES = [
    ("72", "72", True, True, "none: identical"),
    (" 72\n", "72", True, True, "exact match that does not strip the ends"),
    ("Paris", "paris", False, True, "containment without lower-casing; exact that lower-cases"),
    ("The answer is 72.", "72", False, True, "containment as equality"),
    ("the  big\n\tdog barks", "big dog", False, True, "containment without collapsing spaces"),
    ("«Yes!»", "yes", False, True, "stripping ASCII punctuation only"),
    ("it is 7", "72", False, False, "the substring the wrong way round (72 in 7)"),
    ("72", "The answer is 72.", False, False, "the substring the wrong way round"),
    ("3,5", "35", False, False, "punctuation removed inside, not only at the ends"),
    ("a cat.", "A cat", False, True, "exact match that normalises"),
    ("", "72", False, False, "an empty generation contains anything"),
]


@pytest.mark.parametrize(
    ("generated", "reference", "exact", "contained", "catches"), SCORES, ids=lambda v: repr(v)
)
def test_exact_match_and_contains_score_as_worked_out_by_hand(
    generated: str, reference: str, exact: bool, contained: bool, catches: str
) -> None:
    assert exact_match(generated, reference) is exact, catches
    assert contains(generated, reference) is contained, catches


def test_normalise_lowercases_collapses_spaces_and_strips_end_punctuation_only() -> None:
    assert normalise("  The  ANSWER:\n\t3,5 apples!? ") == "the answer: 3,5 apples"


def test_generation_metrics_are_maximised_search_targets() -> None:
    assert natural_mode("val_exact_match") == natural_mode("val_contains") == "max"
    assert natural_mode("test_exact_match") == "max"


# ------------------------------------------------------------------------ on a real model


def own_score(generated: str, reference: str) -> tuple[bool, bool]:
    """The test's own scoring (regular expressions, ASCII): exact and normalised containment."""

    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", text.lower()).strip(string.punctuation + " ")

    return generated.strip() == reference.strip(), norm(reference) in norm(generated)


def hf_greedy(folder: str, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Each prompt's greedy continuation by transformers alone: the folder loaded with the
    Auto classes, `generate` on the unpadded prompt, decoded without special tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        generated = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
        out.append(tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True))
    return out


@pytest.fixture(scope="module")
def memorised(llama_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny Llama trained by the loop (in process) until it has learnt `PAIRS`, monitoring
    `val_exact_match`: every report's metrics, and the last checkpoint's folder."""
    from trainables.in_process import run_in_process

    folder = tmp_path_factory.mktemp("memorise")
    train = write_jsonl(folder / "pairs.jsonl", [{"p": p, "c": c} for p, c in PAIRS])
    cfg = job(
        llama_dir,
        train,
        PAIR_COLUMNS,
        {
            "batch_size": 4,
            "max_steps": 24,
            "eval_every": 2,
            "seed": 0,
            "monitor": "val_exact_match",
            "eval_generate_rows": len(PAIRS),
            "max_new_tokens": 8,
        },
        optimizer={"lr": 3e-3, "weight_decay": 0.0},
    )
    reports: list[tuple[dict[str, Any], str | None]] = []
    run_in_process(
        cfg,
        run_name="memorise",
        storage_path=str(folder),
        on_report=lambda m, c: reports.append((dict(m), c.path if c else None)),
    )
    return {"cfg": cfg, "reports": reports, "folder": folder}


@pytest.mark.timeout(60)
def test_a_model_that_has_memorised_its_rows_scores_exact_match_one(
    memorised: dict[str, Any],
) -> None:
    first, last = memorised["reports"][0][0], memorised["reports"][-1][0]
    checkpoint = memorised["reports"][-1][1]
    # What the model generates, read with transformers alone, is each completion.
    generated = hf_greedy(checkpoint, [p for p, _ in PAIRS], 8)
    assert [g.strip() for g in generated] == [c.strip() for _, c in PAIRS]
    assert last["val_exact_match"] == 1.0 and last["val_contains"] == 1.0
    # At the first report it had not: the metric moves with what the model generates.
    assert first["val_exact_match"] < 1.0


@pytest.mark.timeout(60)
def test_the_fractions_are_those_of_transformers_generations_scored_here(
    memorised: dict[str, Any], tmp_path: Path
) -> None:
    from trainables.evaluation import evaluate_folder

    checkpoint = memorised["reports"][-1][1]
    # References that the memorised continuations match in different ways (by hand: exact
    # 1 of 4 (" a cat"), contains 3 of 4: all but "three").
    references = ["Calm and blue.", "a cat", "three", "the old"]
    rows = [{"p": p, "c": c, "ref": r} for (p, c), r in zip(PAIRS, references, strict=True)]
    files = write_jsonl(tmp_path / "refs.jsonl", rows)
    cfg = job(
        str(checkpoint),
        files,
        {**PAIR_COLUMNS, "reference_column": "ref"},
        {"eval_generate_rows": 4, "max_new_tokens": 8},
    )
    scores = evaluate_folder(cfg, str(checkpoint), "validation")
    assert scores is not None

    generated = hf_greedy(checkpoint, [p for p, _ in PAIRS], 8)
    own = [own_score(g, r) for g, r in zip(generated, references, strict=True)]
    expected_exact = sum(e for e, _ in own) / len(own)
    expected_contains = sum(c for _, c in own) / len(own)
    assert (expected_exact, expected_contains) == (0.25, 0.75)
    assert scores["val_exact_match"] == expected_exact
    assert scores["val_contains"] == expected_contains


@pytest.mark.timeout(60)
def test_only_the_first_rows_are_generated_from(memorised: dict[str, Any], tmp_path: Path) -> None:
    from trainables.evaluation import evaluate_folder

    checkpoint = memorised["reports"][-1][1]
    # Rows 1-2 match their reference, 3-4 do not: 2 rows score 1.0, all 4 would score 0.5.
    references = ["calm and blue", "a cat", "no", "no"]
    rows = [{"p": p, "c": c, "ref": r} for (p, c), r in zip(PAIRS, references, strict=True)]
    files = write_jsonl(tmp_path / "refs.jsonl", rows)
    for count, expected in ((2, 1.0), (4, 0.5)):
        cfg = job(
            str(checkpoint),
            files,
            {**PAIR_COLUMNS, "reference_column": "ref"},
            {"eval_generate_rows": count, "max_new_tokens": 8},
        )
        scores = evaluate_folder(cfg, str(checkpoint), "validation")
        assert scores is not None and scores["val_exact_match"] == expected, count


def lora_job(model: str, train: str, **training: Any) -> FinetuneConfig:
    return FinetuneConfig.model_validate(
        {
            "task": "causal_lm",
            "model": {"name_or_path": model, "method": "lora", "lora": {"dropout": 0.5}},
            "data": {"train": train, "validation": train, "max_length": 32, **PAIR_COLUMNS},
            "training": training,
        }
    )


@pytest.mark.timeout(60)
def test_a_lora_model_generates_through_its_adapter_in_eval_mode(
    llama_dir: str, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "pairs.jsonl", [{"p": p, "c": c} for p, c in PAIRS])
    task = prepare_task(lora_job(llama_dir, train))
    model: Any = task.build_model(task.job_model)  # type: ignore[attr-defined]
    torch.manual_seed(4)  # LoRA's B starts at zero: give the adapter weights that matter
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 2.0)
    # The adapter model's own greedy continuations, by transformers, become the references.
    task.save(model, tmp_path / "merged")
    merged = hf_greedy(str(tmp_path / "merged"), [p for p, _ in PAIRS], 6)
    base = hf_greedy(llama_dir, [p for p, _ in PAIRS], 6)
    assert merged != base  # control: generating without the adapter would not match
    assert all(m.strip() for m in merged)
    rows = [{"p": p, "c": c, "ref": m} for (p, c), m in zip(PAIRS, merged, strict=True)]
    refs = write_jsonl(tmp_path / "refs.jsonl", rows)
    cfg = lora_job(llama_dir, refs, eval_generate_rows=4, max_new_tokens=6)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"reference_column": "ref"})})
    scoring = prepare_task(cfg)

    model.train()  # LoRA dropout 0.5 is on until evaluation switches it off
    scores = evaluate(
        model,
        task_eval_iter(scoring, "validation", 4, 0, 1),
        scoring.metric_state(CPU),
        CPU,
        contextlib.nullcontext,
        "val_",
        scoring.logits,
    )
    assert scores["val_exact_match"] == 1.0
    assert model.training  # put back as it was


# ------------------------------------------------------------------------ two ranks


def evaluate_rank(model: str, files: str, rank: int, world: int) -> dict[str, float]:
    torch.set_num_threads(1)
    cfg = job(
        model,
        files,
        {**PAIR_COLUMNS, "reference_column": "ref"},
        {"eval_generate_rows": 5, "max_new_tokens": 8},
    )
    task = prepare_task(cfg)
    built = task.build_model(cfg.model)
    batches = task_eval_iter(task, "validation", 2, rank, world)
    return evaluate(
        built, batches, task.metric_state(CPU), CPU, contextlib.nullcontext, "val_", task.logits
    )


def rank_main(rank: int, world: int, port: int, model: str, files: str, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        metrics = evaluate_rank(model, files, rank, world)
        Path(out, f"rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_gloo_ranks_report_the_generation_scores_of_one_process(
    memorised: dict[str, Any], tmp_path: Path
) -> None:
    checkpoint = str(memorised["reports"][-1][1])
    # 5 rows, shards {0, 2, 4} and {1, 3}; rows 0 and 1 match exactly, 0-2 contain.
    pairs = [*PAIRS, ("what is the sea", " calm and blue")]
    references = ["calm and blue", "a cat", "TWO!", "moon", "green"]
    rows = [{"p": p, "c": c, "ref": r} for (p, c), r in zip(pairs, references, strict=True)]
    files = write_jsonl(tmp_path / "refs.jsonl", rows)
    whole = evaluate_rank(checkpoint, files, 0, 1)
    assert (whole["val_exact_match"], whole["val_contains"]) == (2 / 5, 3 / 5)
    # Control: a mean of the ranks' own fractions would not be the whole's (1/3 and 1/2).
    assert whole["val_exact_match"] != (1 / 3 + 1 / 2) / 2

    gloo_ranks.run_ranks(rank_main, (2, free_port(), checkpoint, files, str(tmp_path)))
    for rank in (0, 1):
        reported = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert reported["val_exact_match"] == whole["val_exact_match"], rank
        assert reported["val_contains"] == whole["val_contains"], rank


# ------------------------------------------------------------------------ config errors


def raw_job(tmp_path: Path, task: str = "causal_lm", **sections: Any) -> dict[str, Any]:
    data = {"train": str(tmp_path / "t.jsonl"), **sections.pop("data", {})}
    model = {} if task != "causal_lm" else {"name_or_path": str(tmp_path)}
    return {"task": task, "model": model, "data": data, **sections}


CONFIG_ERRORS = [
    (
        "plain text rows",
        {"training": {"eval_generate_rows": 4}},
        r"training\.eval_generate_rows: 4 rows to generate from need a prompt",
    ),
    (
        "a reference column without generation",
        {"data": {**PAIR_COLUMNS, "reference_column": "answer"}},
        r"data\.reference_column: 'answer' scores generated text, and "
        r"training\.eval_generate_rows: 0",
    ),
    (
        "monitoring a generation metric without generation",
        {"data": PAIR_COLUMNS, "training": {"monitor": "val_exact_match"}},
        r"training\.monitor: 'val_exact_match' scores generated text, and "
        r"training\.eval_generate_rows: 0",
    ),
    (
        "a negative row count",
        {"data": PAIR_COLUMNS, "training": {"eval_generate_rows": -1}},
        r"training\.eval_generate_rows: Input should be greater than or equal to 0",
    ),
    (
        "no new tokens",
        {"data": PAIR_COLUMNS, "training": {"eval_generate_rows": 1, "max_new_tokens": 0}},
        r"training\.max_new_tokens: Input should be greater than or equal to 1",
    ),
]


@pytest.mark.parametrize(
    ("sections", "message"), [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS]
)
def test_a_generation_config_error_names_the_field(
    sections: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw_job(tmp_path, **sections))


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"training": {"eval_generate_rows": 2}}, "training.eval_generate_rows"),
        ({"data": {"reference_column": "answer"}}, "data.reference_column"),
    ],
    ids=["rows", "reference"],
)
def test_generation_fields_are_refused_for_other_tasks(
    sections: dict[str, Any], field: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(field)}: .*not 'text'"):
        parse_config(raw_job(tmp_path, "text", **sections))


def sweep(tmp_path: Path, metric: str, **training: Any) -> dict[str, Any]:
    job_raw = raw_job(tmp_path, data=PAIR_COLUMNS, training={"monitor": "val_loss", **training})
    return {"name": "gen", "job": job_raw, "search": {"method": "random", "metric": metric}}


def test_a_sweep_selects_by_a_generation_metric_in_its_natural_direction(
    tmp_path: Path,
) -> None:
    spec = parse_spec(sweep(tmp_path, "val_exact_match", eval_generate_rows=8))
    assert spec.search.mode == "max"
    wrong = sweep(tmp_path, "val_contains", eval_generate_rows=8)
    wrong["search"]["mode"] = "min"
    with pytest.raises(SpecError, match=r"search\.mode: mode 'min' contradicts"):
        parse_spec(wrong)


def test_a_causal_lm_sweep_naming_no_metric_minimises_the_validation_loss(
    tmp_path: Path,
) -> None:
    raw = {"name": "gen", "job": raw_job(tmp_path, data=PAIR_COLUMNS), "search": {}}
    spec = parse_spec(raw)
    assert (spec.search.metric, spec.search.mode) == ("val_loss", "min")


def test_a_sweep_selecting_by_a_generation_metric_it_does_not_generate_names_the_field(
    tmp_path: Path,
) -> None:
    with pytest.raises(SpecError, match=r"search\.metric: 'val_contains' scores generated text"):
        parse_spec(sweep(tmp_path, "val_contains"))


def test_a_reference_column_missing_from_the_file_is_named_with_the_file_before_any_trial(
    llama_dir: str, tmp_path: Path
) -> None:
    train = write_jsonl(tmp_path / "pairs.jsonl", [{"p": p, "c": c} for p, c in PAIRS])
    cfg = job(
        llama_dir,
        train,
        {**PAIR_COLUMNS, "reference_column": "answer"},
        {"eval_generate_rows": 2},
    )
    with pytest.raises(
        DataError, match=r"data\.reference_column: column 'answer' not in .*pairs\.jsonl"
    ):
        check_inputs(cfg)  # what `sweeps run` / `sweeps validate` check on the driver


# Cells of one JSON column share a type: a fraction is in a column of fractions.
@pytest.mark.parametrize(
    ("cells", "row", "problem"),
    [
        (["72", "  "], 2, "an empty reference"),
        ([7.5, 2.25], 1, r"not a text or a whole number \(got float\)"),
        ([72, None], 2, r"not a text or a whole number \(got NoneType\)"),
    ],
    ids=["blank", "fraction", "missing"],
)
def test_a_bad_reference_cell_is_named_by_file_and_row(
    cells: list[Any], row: int, problem: str, llama_dir: str, tmp_path: Path
) -> None:
    rows = [{"p": p, "c": c, "ref": r} for (p, c), r in zip(PAIRS, cells, strict=False)]
    train = write_jsonl(tmp_path / "refs.jsonl", rows)
    columns = {**PAIR_COLUMNS, "reference_column": "ref"}
    cfg = job(llama_dir, train, columns, {"eval_generate_rows": 2})
    with pytest.raises(
        DataError, match=rf"data\.reference_column: .*refs\.jsonl row {row}: {problem}"
    ):
        check_inputs(cfg)


def test_whole_numbers_are_references_as_their_digits(llama_dir: str, tmp_path: Path) -> None:
    rows = [{"p": p, "c": c, "ref": 72} for p, c in PAIRS]
    train = write_jsonl(tmp_path / "refs.jsonl", rows)
    columns = {**PAIR_COLUMNS, "reference_column": "ref"}
    task: Any = prepare_task(job(llama_dir, train, columns, {"eval_generate_rows": 2}))
    assert task.generation.rows["validation"].references == ["72", "72"]
