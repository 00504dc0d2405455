"""Greedy generation on a few evaluation rows of a causal-LM job, scored against a reference
text (`training.eval_generate_rows`, `data.reference_column`): `exact_match` and `contains`,
the fractions of rows whose generation matches, so "classification as generation" can be
searched on accuracy.

- exact match: the generated text equals the reference, both stripped of whitespace at their
  ends (case, inner spacing and punctuation count);
- contains: the normalised reference is a substring of the normalised generation, where
  `normalise` lower-cases, collapses whitespace runs to one space and strips punctuation and
  whitespace at both ends (`"The answer is 72."` contains `"72"`).

Each row is generated alone (no padding: left or right, it cannot change a row's tokens),
greedily, in eval mode, up to `training.max_new_tokens` new tokens or EOS. Under DDP each rank
generates its own shard of the rows (`trainables.data.shard_rows`) and the counts are summed
over ranks, so two ranks report exactly what one process does.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass
from typing import Any

import torch

from trainables.data import shard_rows
from trainables.sft_data import GenerationRows, eos_id, pad_id


def _is_edge(char: str) -> bool:
    """Whitespace or punctuation (ASCII, or any Unicode `P*` category)."""
    return (
        char.isspace() or char in string.punctuation or unicodedata.category(char).startswith("P")
    )


def normalise(text: str) -> str:
    """`text` lower-cased, whitespace runs collapsed to one space, and punctuation and
    whitespace stripped at both ends.

    Example:
        >>> normalise("  The answer:\\n 72. ")
        'the answer: 72'
    """
    text = " ".join(text.lower().split())
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end]


def exact_match(generated: str, reference: str) -> bool:
    """Whether `generated` is `reference`, whitespace at either end aside."""
    return generated.strip() == reference.strip()


def contains(generated: str, reference: str) -> bool:
    """Whether the normalised `reference` is a substring of the normalised `generated` (a
    reference of punctuation alone is contained only in a generation of punctuation alone)."""
    wanted, got = normalise(reference), normalise(generated)
    return wanted in got if wanted else not got


def generate_greedy(model: Any, prompt: list[int], max_new_tokens: int, tokenizer: Any) -> str:
    """The text `model` generates greedily after the token ids `prompt` (one row, unpadded),
    stopping at the tokenizer's EOS or the model's own end tokens; special tokens left out."""
    from transformers import GenerationConfig

    # A chat model's end-of-turn may be its generation config's EOS, not the tokenizer's.
    own = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ends = {
        eos_id(tokenizer),
        *(own if isinstance(own, list) else [own] if own is not None else []),
    }
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=sorted(ends),
        pad_token_id=pad_id(tokenizer),
        use_cache=True,  # training loads the model with it off
    )
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
        )
    return str(tokenizer.decode(out[0, len(prompt) :].tolist(), skip_special_tokens=True))


@dataclass(frozen=True)
class GenerationScorer:
    """A job's rows to generate from, by split, and how.

    Args:
        rows: Prompts and references of each evaluated split (`validation`, `test`).
        tokenizer: The job's tokenizer (EOS, padding id, decoding).
        max_new_tokens: The most tokens a generation adds.
    """

    rows: dict[str, GenerationRows]
    tokenizer: Any
    max_new_tokens: int

    def score(self, model: Any, split: str, rank: int, world: int) -> tuple[int, int, int]:
        """(rows generated, exact matches, containments) over this rank's shard of `split`'s
        rows; zeros for a split without rows."""
        rows = self.rows.get(split)
        if rows is None:
            return 0, 0, 0
        counts = [0, 0, 0]
        for i in shard_rows(len(rows.prompts), world, rank):
            text = generate_greedy(model, rows.prompts[i], self.max_new_tokens, self.tokenizer)
            reference = rows.references[i]
            counts[0] += 1
            counts[1] += exact_match(text, reference)
            counts[2] += contains(text, reference)
        return counts[0], counts[1], counts[2]
