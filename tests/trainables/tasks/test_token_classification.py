"""Token classification (NER) without Ray: entity metrics against seqeval, reading CoNLL /
JSONL / Parquet with its errors, the tag scheme, word-piece alignment and windows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from seqeval.metrics import accuracy_score, classification_report
from seqeval.metrics.sequence_labeling import get_entities

from trainables.errors import DataError
from trainables.tasks.entities import EntityCounts, entities, entity_metrics
from trainables.tasks.token_data import (
    IGNORE,
    check_scheme,
    detect_scheme,
    make_windows,
    parse_conll,
    read_tagged,
    tag_names,
    word_predictions,
)

# --------------------------------------------------------------------------- metrics


def ours(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    counts = EntityCounts()
    for g, p in zip(gold, predicted, strict=True):
        counts.add(g, p)
    return entity_metrics(counts.as_list(), prefix="val_")


def seqeval_figures(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """The reference: seqeval's classification report (micro average) and accuracy."""
    micro = classification_report(gold, predicted, output_dict=True, zero_division=0)["micro avg"]
    return {
        "val_f1_entity": float(micro["f1-score"]),
        "val_precision_entity": float(micro["precision"]),
        "val_recall_entity": float(micro["recall"]),
        "val_token_accuracy": float(accuracy_score(gold, predicted)),
    }


def token_level_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """A wrong implementation: micro F1 over non-`O` word tags, not over entities."""
    pairs = [
        (g, p) for gs, ps in zip(gold, predicted, strict=True) for g, p in zip(gs, ps, strict=True)
    ]
    tp = sum(g == p != "O" for g, p in pairs)
    n_pred = sum(p != "O" for _, p in pairs)
    n_gold = sum(g != "O" for g, _ in pairs)
    return 2 * tp / (n_pred + n_gold)


MIXED_GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC", "O"],
    ["O", "B-ORG", "I-ORG", "I-ORG", "O", "B-PER"],
    ["B-LOC", "O", "O"],
]
MIXED_PRED = [
    ["B-PER", "I-PER", "O", "B-ORG", "O"],  # one right, one wrong type
    ["O", "B-ORG", "I-ORG", "O", "O", "B-PER"],  # a span one word short, one right
    ["B-LOC", "B-PER", "O"],  # one right, one spurious
]


def test_entity_metrics_equal_seqeval_on_mixed_errors() -> None:
    assert ours(MIXED_GOLD, MIXED_PRED) == seqeval_figures(MIXED_GOLD, MIXED_PRED)


def test_entity_f1_is_not_token_f1() -> None:
    """A span one word short scores no entity but most of its tokens: token-level F1 (the wrong
    implementation) differs from seqeval here, and ours agrees with seqeval."""
    gold = [["B-PER", "I-PER", "I-PER", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"]]
    reference = seqeval_figures(gold, predicted)["val_f1_entity"]
    assert reference == 0.0
    assert token_level_f1(gold, predicted) == pytest.approx(0.8)  # the control: it differs
    assert ours(gold, predicted)["val_f1_entity"] == reference


def test_inside_tag_without_begin_starts_an_entity_as_in_seqeval() -> None:
    """`I-PER` after `O` is an entity of its own in seqeval's default mode: the prediction that
    writes `B-PER I-PER` matches the gold `I-PER I-PER`; a strict reader would find no gold
    entity and score 0."""
    gold = [["O", "I-PER", "I-PER", "O", "I-LOC"]]
    predicted = [["O", "B-PER", "I-PER", "O", "B-LOC"]]
    reference = seqeval_figures(gold, predicted)
    assert reference["val_f1_entity"] == 1.0
    assert ours(gold, predicted) == reference


def test_type_change_inside_a_span_as_in_seqeval() -> None:
    gold = [["B-PER", "I-LOC", "I-LOC", "E-LOC", "S-ORG", "I-ORG"]]
    predicted = [["B-PER", "B-LOC", "I-LOC", "O", "S-ORG", "E-ORG"]]
    assert ours(gold, predicted) == seqeval_figures(gold, predicted)


def test_entities_equal_seqeval_on_random_tag_sequences() -> None:
    """600 random IOBES / IOB2 sequences, orphan and mixed tags included."""
    rng = random.Random(7)
    tags = ["O"] + [f"{p}-{t}" for p in "BIES" for t in ("PER", "LOC")]
    for _ in range(600):
        sequence = [rng.choice(tags) for _ in range(rng.randint(1, 12))]
        assert entities(sequence) == set(get_entities(sequence)), sequence


def test_summed_counts_of_two_shards_equal_the_whole_not_the_mean() -> None:
    """What DDP does: each rank counts its sentences, the counts are summed. The mean of the
    two shards' F1 (the wrong reduction) differs on these shards."""
    first, second = EntityCounts(), EntityCounts()
    for i, (g, p) in enumerate(zip(MIXED_GOLD, MIXED_PRED, strict=True)):
        (first if i % 2 == 0 else second).add(g, p)
    summed = [a + b for a, b in zip(first.as_list(), second.as_list(), strict=True)]
    whole = seqeval_figures(MIXED_GOLD, MIXED_PRED)
    assert entity_metrics(summed, prefix="val_") == whole
    halves = [entity_metrics(c.as_list(), prefix="")["f1_entity"] for c in (first, second)]
    assert np.mean(halves) != pytest.approx(whole["val_f1_entity"])


# --------------------------------------------------------------------------- reading

CONLL = (
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "EU NNP B-NP B-ORG\n"
    "rejects VBZ B-VP O\n"
    "German JJ B-NP B-MISC\n"
    " \t \n"
    "Peter\tB-PER\n"
    "van der\tI-PER\n"
    "\t\n"
    "\n"
    "London O O B-LOC\n"
)


def test_conll_sentences_tags_in_the_last_column() -> None:
    split = parse_conll(CONLL, "train.conll", "data.train")
    assert split.tokens == [["EU", "rejects", "German"], ["Peter", "van der"], ["London"]]
    assert split.tags == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert split.where(1, 1) == "train.conll line 8"


def test_conll_line_without_tag_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dev.conll"
    path.write_text("Paris\tB-LOC\nis\tO\nnice\n\n")
    with pytest.raises(
        DataError, match=r"data.validation: dev.conll line 3: token 'nice' has no tag"
    ):
        read_tagged(str(path), "data.validation")


def test_conll_with_no_sentence_is_an_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "test.conll"
    path.write_text("-DOCSTART- O\n\n \t\n")
    with pytest.raises(DataError, match=r"data.test: .*test.conll holds no sentence"):
        read_tagged(str(path), "data.test")


def test_tag_outside_the_given_scheme_names_the_line() -> None:
    split = parse_conll("Paris\tS-LOC\n\nin\tO\nRome\tB_LOC\n", "a.conll", "data.train")
    with pytest.raises(
        DataError, match=r"data.train: a.conll line 1: tag 'S-LOC' is outside the IOB2"
    ):
        check_scheme(split, "iob2", "data.train")


def test_malformed_tag_is_outside_a_detected_scheme() -> None:
    split = parse_conll("Paris\tS-LOC\n\nin\tO\nRome\tB_LOC\n", "a.conll", "data.train")
    scheme = detect_scheme({"train": split})
    assert scheme == "iobes"
    with pytest.raises(DataError, match=r"a.conll line 4: tag 'B_LOC' is outside the IOBES"):
        check_scheme(split, scheme, "data.train")


def test_orphan_inside_tags_are_counted_not_refused() -> None:
    split = parse_conll("a\tI-PER\nb\tI-PER\nc\tO\nd\tI-LOC\n\ne\tB-PER\nf\tI-LOC\n", "x", "f")
    assert check_scheme(split, "iob2", "data.train") == 3


def test_jsonl_lengths_differ_names_row_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    rows = [{"words": ["a", "b"], "ner": ["O", "O"]}, {"words": ["c", "d"], "ner": ["O"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        DataError, match=r"train.jsonl row 1: a sentence of 2 tokens has 1 tags .*'words'.*'ner'"
    ):
        read_tagged(str(path), "data.train", tokens_column="words", tags_column="ner")


def test_parquet_tag_ids_become_label_names(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"tokens": [["Paris", "is"]], "tags": [[1, 0]]}), path)
    split = read_tagged(str(path), "data.train", label_names=("O", "B-LOC", "I-LOC"))
    assert split.tags == [["B-LOC", "O"]]


def test_tag_id_out_of_range_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"tokens": [["a"], ["b"]], "tags": [[0], [5]]}), path)
    with pytest.raises(
        DataError, match=r"data.tags_column: train.parquet row 1: tag 5 in column 'tags'"
    ):
        read_tagged(str(path), "data.train", label_names=("O", "B-LOC", "I-LOC"))


def test_label_set_completes_every_type_with_the_scheme() -> None:
    train = parse_conll("a\tB-PER\nb\tO\n", "t", "f")
    dev = parse_conll("c\tI-LOC\n", "d", "f")
    assert tag_names({"train": train, "validation": dev}, "iob2") == (
        "O",
        "B-LOC",
        "I-LOC",
        "B-PER",
        "I-PER",
    )


# --------------------------------------------------------------------------- windows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


NAMES = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def one_sentence(words: list[str], tags: list[str]):  # type: ignore[no-untyped-def]
    from trainables.tasks.token_data import TaggedSplit

    return TaggedSplit([words], [tags], "x", [1], by_line=True)


def test_first_piece_labelled_the_rest_ignored(tokenizer) -> None:  # type: ignore[no-untyped-def]
    # "supercalifragilistic" is several word pieces in the MiniLM (BERT uncased) vocabulary.
    split = one_sentence(["Peter", "supercalifragilistic", "went"], ["B-PER", "I-PER", "O"])
    pieces = tokenizer(split.tokens[0], is_split_into_words=True)
    windows = make_windows(split, NAMES, tokenizer, max_length=64)
    assert windows.input_ids[0].tolist() == pieces["input_ids"]
    expected = []
    previous = None
    for word in pieces.word_ids():
        if word is None or word == previous:
            expected.append(IGNORE)
        else:
            expected.append(NAMES.index(split.tags[0][word]))
        previous = word
    assert windows.labels[0].tolist() == expected
    assert sum(label != IGNORE for label in expected) == 3 < len(expected) - 2


def test_label_all_tokens_labels_continuations_inside(tokenizer) -> None:  # type: ignore[no-untyped-def]
    split = one_sentence(["supercalifragilistic"], ["B-LOC"])
    labels = make_windows(split, NAMES, tokenizer, 64, label_all_tokens=True).labels[0].tolist()
    assert labels[0] == labels[-1] == IGNORE  # [CLS], [SEP]
    assert labels[1] == NAMES.index("B-LOC")
    assert set(labels[2:-1]) == {NAMES.index("I-LOC")}


def test_long_sentence_becomes_windows_each_word_once(tokenizer) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    vocabulary = ["Paris", "anticonstitutionnellement", "the", "Smithsonian", "a", "ok"]
    words = [rng.choice(vocabulary) for _ in range(60)]
    tags = [rng.choice(NAMES) for _ in words]
    split = one_sentence(words, tags)
    windows = make_windows(split, NAMES, tokenizer, max_length=16)
    assert len(windows.input_ids) > 3
    assert all(len(w) <= 16 for w in windows.input_ids)
    seen = np.concatenate([p[p >= 0] for p in windows.word_positions])
    assert sorted(seen.tolist()) == list(range(60))
    # Labels as predictions give back the gold word tags.
    back = word_predictions(windows, 0, windows.labels, default=0)
    assert [NAMES[i] for i in back] == tags


def test_dropped_word_is_predicted_outside(tokenizer) -> None:  # type: ignore[no-untyped-def]
    split = one_sentence(["Paris", "\u200b", "now"], ["B-LOC", "I-LOC", "O"])
    windows = make_windows(split, NAMES, tokenizer, max_length=16)
    assert (windows.word_positions[0] >= 0).sum() == 2  # the zero-width word has no piece
    back = word_predictions(windows, 0, windows.labels, default=0)
    assert [NAMES[i] for i in back] == ["B-LOC", "O", "O"]
