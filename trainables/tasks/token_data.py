"""Token-classification data: tagged sentences read, checked and cut into model windows.

Sources: CoNLL files (one token per line with its tag in the last whitespace- or
tab-separated column, blank lines between sentences, `-DOCSTART-` lines skipped), or JSONL /
Parquet tables with a list column of tokens and a list column of tags (names, or ids into
`label_names`). Every error names the file, the line (or row) and the field.

The tag scheme (IOB2 or IOBES) is detected from the tags or given, and checked: every tag is
`O` or `<prefix>-<type>` with a prefix of the scheme. An `I-` tag without its entity's start
is kept as written: scoring reads it as seqeval's default mode does (it starts an entity), so
IOB1 files score as they would with seqeval.

Words become word pieces with the fast tokenizer's `word_ids()`: a word's first piece carries
its tag, the other pieces are -100 (ignored by the loss), or, with `label_all_tokens`, carry
the tag too (a `B-` as the matching `I-`, as HF's `run_ner`). A sentence whose pieces do not
fit `max_length` is cut into windows of whole words, without overlap, so each word is in
exactly one window (the word's context across a cut is lost; no word is dropped). A single
word with more pieces than a window holds keeps its first pieces (its tag rides on the first).
Evaluation puts the windows of a sentence back together and scores word-level tags.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from trainables.data import data_file
from trainables.errors import DataError
from trainables.tasks.entities import SCHEME_PREFIXES, split_tag

#: Table formats by suffix; any other file of a token-classification job is read as CoNLL.
TABLE_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
IGNORE = -100


@dataclass(frozen=True)
class TaggedSplit:
    """Sentences of one split: their tokens, their tags, and where each came from (`file`,
    and the line of its first token in a CoNLL file, or its row in a table) for errors."""

    tokens: list[list[str]]
    tags: list[list[str]]
    file: str
    starts: list[int]
    by_line: bool  # starts are 1-based CoNLL lines (one word a line), else 0-based rows

    def __len__(self) -> int:
        return len(self.tokens)

    def where(self, sentence: int, word: int | None = None) -> str:
        """`file line N` of a sentence's word (its first without `word`), or `file row N`."""
        if self.by_line:
            return f"{self.file} line {self.starts[sentence] + (word or 0)}"
        at = f"{self.file} row {self.starts[sentence]}"
        return at if word is None else f"{at}, token {word + 1}"

    def take(self, indices: Sequence[int]) -> TaggedSplit:
        """The sentences at `indices`, in that order."""
        return TaggedSplit(
            [self.tokens[i] for i in indices],
            [self.tags[i] for i in indices],
            self.file,
            [self.starts[i] for i in indices],
            self.by_line,
        )


# --------------------------------------------------------------------------- reading


def _open_text(uri: str, field: str) -> str:
    try:
        fs, path = data_file(uri, field)
        with fs.open_input_stream(path) as f:
            raw = f.read()
    except DataError:
        raise
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{field}: cannot read {uri!r}: {exc}") from None
    try:
        return bytes(raw).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{field}: {uri} is not UTF-8 text: {exc}") from None


def parse_conll(text: str, name: str, field: str) -> TaggedSplit:
    """Sentences of a CoNLL text: token in the first column, tag in the last.

    Columns are split by tabs when the line has one (a token may then hold spaces), else by
    whitespace. Lines holding only whitespace end a sentence.

    Raises:
        DataError: a line with a token and no tag, naming `name` and the line.
    """
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    starts: list[int] = []
    words: list[str] = []
    labels: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if words:
                tokens.append(words)
                tags.append(labels)
                starts.append(first)
                words, labels = [], []
            continue
        columns = [c.strip() for c in line.split("\t")] if "\t" in line.strip() else line.split()
        if columns[0] == "-DOCSTART-":
            continue
        if len(columns) < 2 or not columns[-1]:
            raise DataError(
                f"{field}: {name} line {number}: token {columns[0]!r} has no tag (CoNLL lines are "
                f"a token and its tag in the last column, separated by a tab or spaces)"
            )
        if not columns[0]:
            raise DataError(
                f"{field}: {name} line {number}: empty token before tag {columns[-1]!r}"
            )
        if not words:
            first = number
        words.append(columns[0])
        labels.append(columns[-1])
    if words:
        tokens.append(words)
        tags.append(labels)
        starts.append(first)
    return TaggedSplit(tokens, tags, name, starts, by_line=True)


def _list_column(table: pa.Table, column: str, config_field: str, name: str) -> list[list[Any]]:
    if column not in table.column_names:
        raise DataError(
            f"{config_field}: column {column!r} not in {name}; its columns are {table.column_names}"
        )
    values = table.column(column).to_pylist()
    for row, value in enumerate(values):
        if not isinstance(value, list):
            raise DataError(
                f"{config_field}: {name} row {row}: column {column!r} holds {value!r}, not a list"
            )
    return values


def read_table_split(
    table: pa.Table,
    name: str,
    tokens_column: str,
    tags_column: str,
    label_names: Sequence[str] | None,
) -> TaggedSplit:
    """Sentences of a table with a list of tokens and a list of tags per row; a tag may be an
    id into `label_names`.

    Raises:
        DataError: naming `name`, the row and the column that is wrong.
    """
    tokens = _list_column(table, tokens_column, "data.tokens_column", name)
    raw_tags = _list_column(table, tags_column, "data.tags_column", name)
    tags: list[list[str]] = []
    for row, (words, labels) in enumerate(zip(tokens, raw_tags, strict=True)):
        if any(not isinstance(w, str) or not w for w in words):
            raise DataError(
                f"data.tokens_column: {name} row {row}: column {tokens_column!r} holds an empty "
                f"or non-string token: {words!r}"
            )
        named = []
        for tag in labels:
            if isinstance(tag, str):
                named.append(tag)
            elif isinstance(tag, int) and label_names and 0 <= tag < len(label_names):
                named.append(label_names[tag])
            else:
                where = (
                    f"ids into data.label_names {list(label_names)}"
                    if label_names
                    else ("tag names (or give data.label_names for ids)")
                )
                raise DataError(
                    f"data.tags_column: {name} row {row}: tag {tag!r} in column {tags_column!r} "
                    f"is not one of the {where}"
                )
        tags.append(named)
    return TaggedSplit(tokens, tags, name, list(range(len(tokens))), by_line=False)


def read_tagged(
    uri: str,
    field: str,
    fmt: str = "auto",
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    label_names: Sequence[str] | None = None,
) -> TaggedSplit:
    """One split's sentences from `uri` (CoNLL, JSONL or Parquet by `fmt` or by suffix).

    Raises:
        DataError: an unreadable file, a bad line or row, tokens and tags of different
            lengths, or no sentence at all, naming `field`, the file and the line or row.
    """
    name = PurePosixPath(uri.split("?")[0]).name
    suffix = PurePosixPath(name).suffix.lower()
    kind = fmt if fmt not in ("auto", None) else TABLE_SUFFIXES.get(suffix, "conll")
    if kind == "conll":
        split = parse_conll(_open_text(uri, field), name, field)
    elif kind in ("jsonl", "parquet"):
        from trainables.data import read_table

        table = read_table(uri, kind, field)
        split = read_table_split(table, name, tokens_column, tags_column, label_names)
    else:
        raise DataError(
            f"data.format: {fmt!r} is not a token-classification format (conll, jsonl, parquet)"
        )
    for sentence, (words, labels) in enumerate(zip(split.tokens, split.tags, strict=True)):
        if len(words) != len(labels):
            raise DataError(
                f"{field}: {split.where(sentence)}: a sentence of {len(words)} tokens has "
                f"{len(labels)} tags (fields {tokens_column!r} and {tags_column!r})"
            )
        if not words:
            raise DataError(f"{field}: {split.where(sentence)}: a sentence without tokens")
    if not len(split):
        raise DataError(f"{field}: {uri} holds no sentence (the split is empty)")
    return split


# --------------------------------------------------------------------------- the tag scheme


def detect_scheme(splits: dict[str, TaggedSplit]) -> str:
    """`iobes` when any tag starts with `E-` or `S-`, else `iob2`."""
    for split in splits.values():
        for labels in split.tags:
            if any(t[:2] in ("E-", "S-") for t in labels):
                return "iobes"
    return "iob2"


def check_scheme(split: TaggedSplit, scheme: str, field: str) -> int:
    """Checks every tag of `split` against `scheme`; returns how many `I-` (or `E-`) tags
    continue no entity (scored as seqeval's default mode does: as an entity start).

    Raises:
        DataError: a tag that is not `O` or `<prefix>-<type>` with a prefix of the scheme,
            naming the sentence's origin and the word's position.
    """
    prefixes = SCHEME_PREFIXES[scheme]
    orphans = 0
    for sentence, labels in enumerate(split.tags):
        prev, prev_type = "O", ""
        for position, tag in enumerate(labels):
            prefix, type_ = split_tag(tag)
            if tag != "O" and (len(tag) < 3 or tag[1] != "-" or prefix not in prefixes):
                raise DataError(
                    f"{field}: {split.where(sentence, position)}: tag {tag!r} is outside the "
                    f"{scheme.upper()} scheme (O, or {'/'.join(prefixes)}-TYPE)"
                )
            if prefix in ("I", "E") and (prev in ("O", "E", "S") or prev_type != type_):
                orphans += 1
            prev, prev_type = prefix, type_
    return orphans


def tag_names(
    splits: dict[str, TaggedSplit], scheme: str, given: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The label set: `given` (every tag of the data must be in it), else `O` then, for every
    entity type of any split in sorted order, each prefix of the scheme (`B-X`, `I-X`, ...),
    so the head can predict a whole entity of a type seen only partly.

    Raises:
        DataError: a tag of the data not in `given`, naming where.
    """
    if given:
        known = set(given)
        for name, split in splits.items():
            for sentence, labels in enumerate(split.tags):
                for position, tag in enumerate(labels):
                    if tag not in known:
                        raise DataError(
                            f"data.{name}: {split.where(sentence, position)}: tag {tag!r} is "
                            f"not in data.label_names {list(given)}"
                        )
        return tuple(given)
    types = sorted(
        {split_tag(t)[1] for s in splits.values() for labels in s.tags for t in labels} - {""}
    )
    return ("O", *(f"{p}-{t}" for t in types for p in SCHEME_PREFIXES[scheme]))


def carve(split: TaggedSplit, fraction: float, seed: int) -> tuple[TaggedSplit, TaggedSplit]:
    """(kept, held out): `fraction` of the sentences held out, chosen by a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(len(split))
    held = round(len(split) * fraction)
    return split.take(sorted(order[held:].tolist())), split.take(sorted(order[:held].tolist()))


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Windows:
    """One split as model rows: windows of whole words, each row's piece ids, piece labels
    (-100 where ignored) and word positions (the word index within its sentence at a word's
    first piece, -1 elsewhere); `sentence_windows[s]:sentence_windows[s + 1]` are sentence
    `s`'s windows; `gold[s]` its word-level tag ids."""

    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    word_positions: list[np.ndarray]
    sentence_windows: np.ndarray
    gold: list[np.ndarray]
    cut_words: int  # words whose pieces did not fit one window (first pieces kept)

    @property
    def lengths(self) -> np.ndarray:
        """Pieces per window."""
        return np.fromiter((len(r) for r in self.input_ids), dtype=np.int64)

    def windows_of(self, sentences: Sequence[int]) -> list[int]:
        """The window rows of `sentences`, sentence by sentence."""
        bounds = self.sentence_windows
        return [w for s in sentences for w in range(bounds[s], bounds[s + 1])]


def _piece_counts(tokenizer: Any, words: list[list[str]]) -> Iterator[list[int]]:
    """Each sentence's pieces per word (0 for a word the tokenizer drops)."""
    for start in range(0, len(words), 4096):
        chunk = words[start : start + 4096]
        encoded = tokenizer(
            chunk, is_split_into_words=True, add_special_tokens=False, truncation=False
        )
        for row, sentence in enumerate(chunk):
            counts = [0] * len(sentence)
            for word in encoded.word_ids(row):
                if word is not None:
                    counts[word] += 1
            yield counts


def plan_windows(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) of one sentence, each holding at most `budget` pieces but for
    a single word longer than that (alone in its window); at least one range."""
    ranges = []
    start, used = 0, 0
    for word, count in enumerate(counts):
        if used + count > budget and word > start:
            ranges.append((start, word))
            start, used = word, 0
        used += count
    ranges.append((start, len(counts)))
    return ranges


def make_windows(
    split: TaggedSplit,
    names: Sequence[str],
    tokenizer: Any,
    max_length: int,
    label_all_tokens: bool = False,
) -> Windows:
    """Cuts every sentence into windows of at most `max_length` pieces (special tokens
    included) and labels their pieces (see the module's docstring)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            "model.name_or_path: token classification needs a fast tokenizer (word_ids())"
        )
    index = {name: i for i, name in enumerate(names)}
    inside = {  # a B- tag's I- twin, for continuation pieces under label_all_tokens
        i: index.get("I-" + name[2:], i) for name, i in index.items() if name.startswith("B-")
    }
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise DataError(f"data.max_length: {max_length} leaves no room for a word")
    gold = [np.array([index[t] for t in sentence], dtype=np.int64) for sentence in split.tags]
    spans: list[tuple[int, int, int]] = []  # (sentence, first word, end word) per window
    bounds = [0]
    cut = 0
    for sentence, counts in enumerate(_piece_counts(tokenizer, split.tokens)):
        ranges = plan_windows(counts, budget)
        cut += sum(counts[a] > budget for a, b in ranges if b - a == 1)
        spans += [(sentence, a, b) for a, b in ranges]
        bounds.append(len(spans))
    ids: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for start in range(0, len(spans), 4096):
        chunk = spans[start : start + 4096]
        encoded = tokenizer(
            [split.tokens[s][a:b] for s, a, b in chunk],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        for row, (sentence, first_word, _) in enumerate(chunk):
            word_ids = encoded.word_ids(row)
            lab = np.full(len(word_ids), IGNORE, dtype=np.int64)
            pos = np.full(len(word_ids), -1, dtype=np.int64)
            previous = None
            for i, word in enumerate(word_ids):
                if word is None:
                    continue
                tag = int(gold[sentence][first_word + word])
                if word != previous:
                    lab[i], pos[i] = tag, first_word + word
                elif label_all_tokens:
                    lab[i] = inside.get(tag, tag)
                previous = word
            ids.append(np.asarray(encoded["input_ids"][row], dtype=np.int64))
            labels.append(lab)
            positions.append(pos)
    return Windows(ids, labels, positions, np.asarray(bounds, dtype=np.int64), gold, cut)


def word_predictions(
    windows: Windows, sentence: int, piece_predictions: Sequence[np.ndarray], default: int
) -> np.ndarray:
    """Sentence `sentence`'s word-level tag ids from its windows' piece-level predictions
    (in window order): each word's first piece decides; a word without pieces (one the
    tokenizer drops) gets `default` (the `O` tag)."""
    words = np.full(len(windows.gold[sentence]), default, dtype=np.int64)
    first = int(windows.sentence_windows[sentence])
    for offset, predicted in enumerate(piece_predictions):
        positions = windows.word_positions[first + offset]
        at = positions >= 0
        words[positions[at]] = np.asarray(predicted)[: len(positions)][at]
    return words
