"""Supervised fine-tuning data for causal language models (`task: causal_lm`): reading,
templating, loss masking and packing.

A row is one of three forms (`DataConfig`):

- plain text (`text_column`): every token is learned (continued pre-training);
- a prompt and a completion (`prompt_column` + `completion_column`): only the completion's
  tokens and the EOS after it are learned;
- a conversation (`messages_column`: a list of `{role, content}` turns) rendered with the
  tokenizer's chat template (`apply_chat_template`, or `data.chat_template`): only the
  assistant turns are learned, each with the tokens its template closes it with (the
  end-of-turn / EOS token).

An example is its token ids and its labels: the id where the token is learned, `IGNORE`
(-100) where it is not (prompt, user turns, padding). Labels are not shifted; the loss
compares the logits at position t with the label at t + 1, as transformers' causal LMs do.

Packing (`data.packing`) puts several examples in one row of up to `max_length` tokens; each
example's positions restart at 0 and its first label is ignored, so with attention kept
inside each example (transformers' packed-sequence masks, read from the restarting
`position_ids`) a packed row's summed loss is the sum of its examples' own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.errors import DataError

if TYPE_CHECKING:
    from trainables.config import DataConfig

log = logging.getLogger(__name__)

#: The label of a token that is not learned (transformers' and PyTorch's ignore index).
IGNORE = -100


def sft_mode(data: DataConfig) -> str:
    """`messages`, `prompt_completion` or `text`: the form of the job's rows."""
    if data.messages_column:
        return "messages"
    if data.prompt_column:
        return "prompt_completion"
    return "text"


@dataclass(frozen=True)
class SftSplit:
    """One split's rows as read (a text, a (prompt, completion) pair, or a list of turns),
    with where each came from, for error messages, and each row's `data.reference_column`
    (as text) where the job names one."""

    rows: list[Any]
    source: str
    row_numbers: list[int]
    references: list[str] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: Sequence[int] | np.ndarray) -> SftSplit:
        """The rows at `indices`."""
        refs = self.references
        return SftSplit(
            [self.rows[i] for i in indices],
            self.source,
            [self.row_numbers[i] for i in indices],
            None if refs is None else [refs[i] for i in indices],
        )

    def where(self, i: int) -> str:
        """`<file> row <n>` (1-based, as an editor counts a JSONL file's lines)."""
        return f"{self.source} row {self.row_numbers[i] + 1}"


@dataclass(frozen=True)
class SftDataset:
    """A causal-LM job's splits, shaped as `trainables.data.Dataset` (no labels: the text is
    the target)."""

    splits: dict[str, SftSplit]
    label_names: tuple[str, ...] = ()


def _turns(value: Any, field: str, where: str) -> list[dict[str, str]]:
    """A messages cell as a list of {role, content} turns, or a DataError saying what it is."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(
                f"{field}: {where}: not a list of {{role, content}} turns (a string that is "
                f"not JSON)"
            ) from None
    if not isinstance(value, list) or not value:
        raise DataError(
            f"{field}: {where}: not a list of {{role, content}} turns (got {type(value).__name__})"
        )
    turns = []
    for k, turn in enumerate(value):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("role"), str)
            or not isinstance(turn.get("content"), str)
        ):
            raise DataError(
                f"{field}: {where}: turn {k} is not a {{role, content}} mapping of strings: "
                f"{turn!r:.80}"
            )
        turns.append({"role": turn["role"], "content": turn["content"]})
    if not any(t["role"] == "assistant" for t in turns):
        raise DataError(f"{field}: {where}: no assistant turn, so nothing to learn")
    return turns


def _read_split(table: Any, data: DataConfig, source: str) -> SftSplit:
    mode = sft_mode(data)
    columns = (
        [data.messages_column]
        if mode == "messages"
        else [data.prompt_column, data.completion_column]
        if mode == "prompt_completion"
        else [data.text_column]
    )
    values = []
    for column in columns:
        assert column is not None
        if column not in table.column_names:
            raise DataError(
                f"data.{_field_of(data, column)}: column {column!r} not in {source}; its "
                f"columns are {table.column_names}"
            )
        values.append(table.column(column).to_pylist())
    rows: list[Any] = []
    for i in range(table.num_rows):
        where = f"{source} row {i + 1}"
        if mode == "messages":
            rows.append(_turns(values[0][i], "data.messages_column", where))
            continue
        cells = [v[i] for v in values]
        for column, cell in zip(columns, cells, strict=True):
            if not isinstance(cell, str):
                raise DataError(
                    f"data.{_field_of(data, column or '')}: {where}: not a text "
                    f"(got {type(cell).__name__})"
                )
        if mode == "prompt_completion":
            if not cells[1].strip():
                raise DataError(f"data.completion_column: {where}: an empty completion")
            rows.append((cells[0], cells[1]))
        else:
            if not cells[0].strip():
                raise DataError(f"data.text_column: {where}: an empty text")
            rows.append(cells[0])
    if not rows:
        raise DataError(f"{source}: no rows")
    references = _references(table, data.reference_column, source)
    return SftSplit(rows, source, list(range(len(rows))), references)


def _references(table: Any, column: str | None, source: str) -> list[str] | None:
    """`column`'s cells as text (a whole number as its digits), or a DataError naming the
    file and row of a missing column, an empty cell or one of another type."""
    if column is None:
        return None
    if column not in table.column_names:
        raise DataError(
            f"data.reference_column: column {column!r} not in {source}; its columns are "
            f"{table.column_names}"
        )
    references = []
    for i, cell in enumerate(table.column(column).to_pylist()):
        where = f"{source} row {i + 1}"
        if isinstance(cell, int) and not isinstance(cell, bool):
            cell = str(cell)
        if not isinstance(cell, str):
            raise DataError(
                f"data.reference_column: {where}: not a text or a whole number (got "
                f"{type(cell).__name__}); write the reference as a string"
            )
        if not cell.strip():
            raise DataError(f"data.reference_column: {where}: an empty reference")
        references.append(cell)
    return references


def _field_of(data: DataConfig, column: str) -> str:
    for name in ("messages_column", "prompt_column", "completion_column", "text_column"):
        if getattr(data, name) == column:
            return name
    return "text_column"


def read_sft_splits(data: DataConfig) -> SftDataset:
    """The job's rows by split, checked for form (not yet tokenized); validation / test splits
    not given are carved from train (seeded).

    Raises:
        DataError: naming the field, file and row at fault.
    """
    from trainables.data import SPLITS, read_raw_splits

    tables = read_raw_splits(data)
    splits: dict[str, SftSplit] = {}
    for name in SPLITS:
        if name in tables:
            source = getattr(data, name, None) or f"{data.hub_dataset} ({name})"
            splits[name] = _read_split(tables[name], data, str(source))
    if "train" not in splits:
        raise DataError("data: no train split")
    original = len(splits["train"])
    rng = np.random.default_rng(data.split_seed)
    for name, fraction in (("validation", data.validation_fraction), ("test", data.test_fraction)):
        if name in splits or fraction == 0.0:
            continue
        train = splits["train"]
        held = max(1, round(fraction * original))
        if held >= len(train):
            raise DataError(
                f"data.{name}_fraction: {fraction} of {original} train rows leaves an empty "
                f"split; give a data.{name} file or a larger fraction"
            )
        order = rng.permutation(len(train))
        splits[name] = train.take(np.sort(order[:held]))
        splits["train"] = train.take(np.sort(order[held:]))
    return SftDataset(splits)


@dataclass(frozen=True)
class Encoded:
    """One split tokenized: each example's ids and labels (`IGNORE` where not learned)."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    dropped: int


def eos_id(tokenizer: Any) -> int:
    """The tokenizer's EOS id (what ends every learned completion)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(
            "model.name_or_path: the tokenizer has no EOS token, so a completion's end cannot "
            "be learned; give a model whose tokenizer sets eos_token"
        )
    return int(eos)


def pad_id(tokenizer: Any) -> int:
    """The pad id: the tokenizer's, else its EOS (padding is masked out of attention and
    loss either way)."""
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else eos_id(tokenizer)


def encode_split(
    split: SftSplit, data: DataConfig, tokenizer: Any, field: str = "data.train"
) -> Encoded:
    """Tokenizes `split` and marks what is learned. Examples longer than `data.max_length`
    are cut to it (their end is not learned); an example whose prompt (everything before the
    first learned token) fills `max_length` is dropped, and counted.

    Raises:
        DataError: a row the chat template cannot render, or a split that loses every row.
    """
    mode = sft_mode(data)
    eos = eos_id(tokenizer)
    limit = data.max_length
    ids_out: list[list[int]] = []
    labels_out: list[list[int]] = []
    dropped: list[str] = []
    template = _chat_template(tokenizer, data) if mode == "messages" else None
    for i, row in enumerate(split.rows):
        if mode == "text":
            ids = list(tokenizer(row, add_special_tokens=True)["input_ids"])
            if not ids or ids[-1] != eos:
                ids.append(eos)
            labels = list(ids)
        elif mode == "prompt_completion":
            prompt = list(tokenizer(row[0], add_special_tokens=True)["input_ids"])
            completion = list(tokenizer(row[1], add_special_tokens=False)["input_ids"])
            completion.append(eos)
            ids = prompt + completion
            labels = [IGNORE] * len(prompt) + completion
        else:
            ids, labels = encode_messages(row, tokenizer, template, split.where(i), field)
        ids, labels = ids[:limit], labels[:limit]
        # Position 0 is never predicted: an example must learn a token after it.
        if all(label == IGNORE for label in labels[1:]):
            dropped.append(split.where(i))
            continue
        ids_out.append(ids)
        labels_out.append(labels)
    if dropped:
        if not ids_out:
            raise DataError(
                f"{field}: every one of the {len(dropped)} rows of {split.source} has a prompt of "
                f"data.max_length ({limit}) tokens or more, leaving nothing to learn; raise "
                f"data.max_length"
            )
        log.warning(
            "%s: %d of %d rows dropped: their prompt fills data.max_length (%d tokens): %s",
            field,
            len(dropped),
            len(split),
            limit,
            ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else ""),
        )
    return Encoded(ids_out, labels_out, len(dropped))


def _chat_template(tokenizer: Any, data: DataConfig) -> str | None:
    if data.chat_template:
        return data.chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "data.messages_column: the model's tokenizer has no chat template to render "
            "messages with; give data.chat_template (a Jinja template), or use prompt_column "
            "and completion_column"
        )
    return None


def _render(
    tokenizer: Any, turns: list[dict[str, str]], template: str | None, generation: bool
) -> str:
    text = tokenizer.apply_chat_template(
        turns, chat_template=template, tokenize=False, add_generation_prompt=generation
    )
    return str(text)


def encode_messages(
    turns: list[dict[str, str]], tokenizer: Any, template: str | None, where: str, field: str
) -> tuple[list[int], list[int]]:
    """The ids of a rendered conversation and its labels: the tokens of each assistant turn
    (from the end of the generation prompt before it to the end of its own rendering, so
    with its end-of-turn token) are learned.

    A turn's span is found by rendering prefixes of the conversation: the text of
    `turns[:k]` with the generation prompt, and of `turns[:k + 1]`, are prefixes of the whole
    rendering for the templates that render turn by turn; the tokens whose characters fall
    in the span are learned (by the fast tokenizer's offsets).

    Raises:
        DataError: the template fails on the row (an unknown role), leaves a turn's content
            out, or does not render turn by turn.
    """
    try:
        full = _render(tokenizer, turns, template, False)
        spans = []
        for k, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            start = len(_render(tokenizer, turns[:k], template, True)) if k else 0
            through = _render(tokenizer, turns[: k + 1], template, False)
            if not full.startswith(through) or start > len(through):
                raise DataError(
                    f"{field}: {where}: the chat template does not render this conversation "
                    f"turn by turn (turn {k}'s rendering is not a prefix of the whole), so its "
                    f"assistant tokens cannot be found"
                )
            spans.append((start, len(through)))
    except DataError:
        raise
    except Exception as exc:  # jinja's raise_exception: an unknown role, a bad order
        roles = sorted({t["role"] for t in turns})
        raise DataError(
            f"{field}: {where}: the chat template cannot render roles {roles}: {exc}"
        ) from None
    for k, turn in enumerate(turns):
        if turn["content"].strip() and turn["content"].strip() not in full:
            raise DataError(
                f"{field}: {where}: turn {k} (role {turn['role']!r}) is left out by the chat "
                f"template: a role it does not know"
            )
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [IGNORE] * len(ids)
    for t, (begin, _end) in enumerate(encoded["offset_mapping"]):
        if any(start <= begin < end for start, end in spans):
            labels[t] = ids[t]
    return ids, labels


@dataclass(frozen=True)
class GenerationRows:
    """Rows to generate from: each prompt's token ids (what the model sees before its first
    learned token, as training tokenizes it) and the reference text its generation is scored
    against."""

    prompts: list[list[int]]
    references: list[str]


def generation_rows(
    split: SftSplit, data: DataConfig, tokenizer: Any, count: int
) -> GenerationRows:
    """The first `count` rows of `split` whose prompt is shorter than `data.max_length`: a
    prompt-completion row's prompt, or a conversation up to its last assistant turn rendered
    with the generation prompt. The reference is the row's `data.reference_column`, else the
    completion or that last assistant turn's content."""
    mode = sft_mode(data)
    template = _chat_template(tokenizer, data) if mode == "messages" else None
    prompts: list[list[int]] = []
    references: list[str] = []
    for i, row in enumerate(split.rows):
        if len(prompts) == count:
            break
        if mode == "prompt_completion":
            ids = list(tokenizer(row[0], add_special_tokens=True)["input_ids"])
            reference = row[1]
        else:
            last = max(k for k, turn in enumerate(row) if turn["role"] == "assistant")
            text = _render(tokenizer, row[:last], template, True)
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            reference = row[last]["content"]
        if len(ids) >= data.max_length:
            continue  # dropped from evaluation too (see encode_split)
        prompts.append(ids)
        references.append(split.references[i] if split.references is not None else reference)
    return GenerationRows(prompts, references)


def pack(
    encoded: Encoded, max_length: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Examples packed in order into rows of at most `max_length` tokens (an example starts a
    new row when it does not fit): each row's ids, labels (each example's first label
    ignored: nothing before it in its own example predicts it) and positions (restarting at
    0 per example)."""
    rows_ids: list[list[int]] = []
    rows_labels: list[list[int]] = []
    rows_positions: list[list[int]] = []
    for ids, labels in zip(encoded.input_ids, encoded.labels, strict=True):
        if not rows_ids or len(rows_ids[-1]) + len(ids) > max_length:
            rows_ids.append([])
            rows_labels.append([])
            rows_positions.append([])
        rows_ids[-1].extend(ids)
        rows_labels[-1].extend([IGNORE, *labels[1:]])
        rows_positions[-1].extend(range(len(ids)))
    return rows_ids, rows_labels, rows_positions
