"""Chaos: seeded random mutations of every example spec through `python -m sweeps validate`.

Each mutation breaks one thing of one example (a wrong type, an out-of-range number, a deleted
or an unknown key at any depth, a swapped distribution, min > max, a bad enum string, a broken
document) and is written to its own file; the files go through the real command line as
subprocesses, many files per process. Whatever the mutation, the command prints no traceback,
exits 0 or 2, gives every file exactly one result line, and every error names the mutated key
or its parent. An unknown key is always an error, except in the free mappings of resources.

A failure names the seed and the mutation; `SPEC_FUZZ_SEED=<n>` reruns another seed.
"""

from __future__ import annotations

import copy
import math
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "sweeps" / "examples").rglob("*.yaml"))
SEED = int(os.environ.get("SPEC_FUZZ_SEED", "20150"))
#: Mutations in all; split into BATCHES processes, each paying the imports once.
MUTATIONS = 1040
BATCHES = 2
#: Mappings whose keys are free names (Ray resources): an unknown key there is valid.
FREE_MAPPINGS = ("driver_resources", "resources")

KeyPath = tuple[Any, ...]


@dataclass(frozen=True)
class Mutation:
    """One change to one example: `kind` at `path` (a key path into the YAML), to `value`."""

    index: int
    example: str
    kind: str
    path: KeyPath
    value: Any = None

    def describe(self) -> str:
        """`#index example: kind at dotted.path -> value`, enough to find and rerun it."""
        where = ".".join(str(p) for p in self.path) or "<document>"
        return f"#{self.index} {self.example}: {self.kind} at {where} -> {self.value!r}"

    @property
    def key_names(self) -> tuple[str, str]:
        """The mutated key and its parent (list indexes skipped; "" for none)."""
        keys = [str(p) for p in self.path if not isinstance(p, int)]
        if self.kind == "unknown_key" and isinstance(self.path[-1], int):
            keys.append(str(self.path[-1]))  # a key that is a number, not a list index
        keys = ["", "", *keys]
        return keys[-1], keys[-2]

    @property
    def must_fail(self) -> bool:
        """Whether no spec can be valid after this mutation."""
        if self.kind == "unknown_key":
            return not (self.path[:-1] and self.path[-2] in FREE_MAPPINGS)
        return self.kind in ("min_above_max", "broken_document")


# ---------------------------------------------------------------------------------- mutations

WRONG_TYPES: list[Any] = ["not-a-number", [1, 2], {"zz": 1}, None, True, 7, 0.5]
OUT_OF_BOUNDS: list[Any] = [-1, 0, -0.5, 10**12, 1e300, "nan", math.nan, "inf", -math.inf]
BOGUS_STRINGS = ["zz-bogus", "", "MAX", " tpe"]
SPACE_KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "normal", "lognormal")
BOGUS_KINDS = ("gaussian", "log_uniform", "qloguniform", "Uniform")
WANDB_DISTRIBUTIONS = (
    *("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform"),
    *("q_log_uniform", "log_uniform_values", "inv_log_uniform_values", "normal", "q_normal"),
    *("log_normal", "q_log_normal", "beta", "loguniform", ""),
)


def nodes(tree: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every (path, value) below `tree`: dict entries and list items, depth first."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        yield (*path, key), value
        if isinstance(value, dict | list):
            yield from nodes(value, (*path, key))


def get(tree: Any, path: KeyPath) -> Any:
    """The node of `tree` at `path`."""
    for part in path:
        tree = tree[part]
    return tree


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def mutate(
    raw: dict[str, Any], example: str, index: int, rng: random.Random
) -> tuple[Any, Mutation]:
    """`raw` with one random mutation, and the mutation. Deterministic given `rng`'s state."""
    all_nodes = list(nodes(raw))
    dicts = [((), raw)] + [(p, v) for p, v in all_nodes if isinstance(v, dict)]
    keyed = [(p, v) for p, v in all_nodes if not isinstance(p[-1], int)]
    numbers = [(p, v) for p, v in all_nodes if is_number(v)]
    strings = [(p, v) for p, v in all_nodes if isinstance(v, str)]
    # Ranges: [low, high] of a space distribution, or a W&B parameter's min and max.
    ranges = [
        p
        for p, v in all_nodes
        if (p[-1] in ("uniform", "loguniform", "randint") and isinstance(v, list))
        or (isinstance(v, dict) and "min" in v and "max" in v)
    ]
    kinds = [p for p, v in all_nodes if len(p) >= 2 and p[-2] == "space" and isinstance(v, dict)]
    wandb_params = [p for p, v in all_nodes if p[:1] == ("parameters",) and isinstance(v, dict)]
    choices = {
        "wrong_type": bool(all_nodes),
        "out_of_bounds": bool(numbers),
        "delete_key": bool(keyed),
        "unknown_key": True,
        "swap_distribution": bool(kinds or wandb_params),
        "min_above_max": bool(ranges),
        "bogus_string": bool(strings),
        "broken_document": True,
    }
    weights = {"broken_document": 1, "unknown_key": 4, "wrong_type": 4, "delete_key": 3}
    names = [k for k, ok in choices.items() if ok]
    kind = rng.choices(names, [weights.get(k, 2) for k in names])[0]
    out = copy.deepcopy(raw)

    if kind == "wrong_type":
        path, old = rng.choice(all_nodes)
        value = rng.choice([v for v in WRONG_TYPES if type(v) is not type(old)])
        get(out, path[:-1])[path[-1]] = value
        return out, Mutation(index, example, kind, path, value)
    if kind == "out_of_bounds":
        path, _ = rng.choice(numbers)
        value = rng.choice(OUT_OF_BOUNDS)
        get(out, path[:-1])[path[-1]] = value
        return out, Mutation(index, example, kind, path, value)
    if kind == "delete_key":
        path, _ = rng.choice(keyed)
        del get(out, path[:-1])[path[-1]]
        return out, Mutation(index, example, kind, path)
    if kind == "unknown_key":
        parent, node = rng.choice(dicts)
        siblings = [k for k in node if isinstance(k, str)]
        # A near miss of a sibling (a typo), a plain stranger, or a key that is not a string.
        key = rng.choice(
            [f"{rng.choice(siblings)}s" if siblings else "zz_unknown", "zz_unknown", 7]
        )
        get(out, parent)[key] = 1
        return out, Mutation(index, example, kind, (*parent, key), 1)
    if kind == "swap_distribution":
        path = rng.choice(kinds + wandb_params)
        param = get(out, path)
        if path[0] == "parameters":
            value = rng.choice(WANDB_DISTRIBUTIONS)
            param["distribution"] = value
            return out, Mutation(index, example, kind, (*path, "distribution"), value)
        old = next(k for k in param if k in SPACE_KINDS)
        value = rng.choice([k for k in SPACE_KINDS + BOGUS_KINDS if k != old])
        param[value] = param.pop(old)
        return out, Mutation(index, example, kind, (*path, value), old)
    if kind == "min_above_max":
        path = rng.choice(ranges)
        node = get(out, path)
        if isinstance(node, dict):
            node["min"], node["max"] = node["max"], node["min"] * rng.choice([1, 1, 0.5])
            return out, Mutation(index, example, kind, (*path, "min"), node["min"])
        node.reverse()
        return out, Mutation(index, example, kind, path, node)
    if kind == "bogus_string":
        path, _ = rng.choice(strings)
        value = rng.choice(BOGUS_STRINGS)
        get(out, path[:-1])[path[-1]] = value
        return out, Mutation(index, example, kind, path, value)
    # A document that is not a mapping, not YAML (a line broken into the example), or not text.
    lines = yaml.safe_dump(raw, sort_keys=False).splitlines()
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(["zz: [unclosed", "a: b: c", "\tx: 1"]))
    broken = "\n".join(lines) + "\n"
    value = rng.choice([[], "just text", 42, "", broken, b"\xff\xfename: x\n"])
    return value, Mutation(index, example, "broken_document", (), value)


def local_data(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with data in a bucket replaced by the embedded demo task, storage in a bucket by
    local folders, and a causal LM named by a Hub id by the tiny Llama `--smoke-test` swaps in
    (`sweeps.cli.smoke_swaps`): validate reads the data, loads the tokenizer and checks the
    storage can be written, and this machine reaches neither a bucket nor the Hub (the spec's
    other fields stay as they are, so everything but resolving the Hub id is validated)."""
    raw = local_model(raw)
    if "://" in str(raw.get("storage_path", "")):
        raw = {**raw, "storage_path": "./results/sweeps"}
    if "://" in str((raw.get("promote") or {}).get("to", "")):
        raw = {**raw, "promote": {**raw["promote"], "to": "./results/models"}}
    data = (raw.get("job") or {}).get("data") or {}
    if "://" not in str(data.get("train", "")):
        return raw
    kept = {k: v for k, v in data.items() if k in ("max_length", "split_seed")}
    return {**raw, "job": {**raw["job"], "data": {"builtin": "demo", **kept}}}


def local_model(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with a causal LM that is not a local folder replaced by the smoke-test model."""
    job = raw.get("job") or {}
    model = job.get("model") or {}
    if job.get("task") != "causal_lm" or Path(str(model.get("name_or_path"))).is_dir():
        return raw
    from trainables.tiny_lm import smoke_model

    return {**raw, "job": {**job, "model": {**model, "name_or_path": smoke_model()}}}


def mutations(seed: int, count: int) -> list[tuple[Any, Mutation]]:
    """`count` mutated specs, the examples in turn, all drawn from one `random.Random(seed)`."""
    rng = random.Random(seed)
    bases = {p.stem: local_data(yaml.safe_load(p.read_text())) for p in EXAMPLES}
    names = sorted(bases)
    return [
        mutate(bases[names[i % len(names)]], names[i % len(names)], i, rng) for i in range(count)
    ]


def write(raw: Any, path: Path) -> None:
    """Writes a mutated spec as YAML; text or bytes (a broken document) as they are."""
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))


# ------------------------------------------------------------------------------- the checks


def problems(
    files: list[Path], muts: list[Mutation], returncode: int, out: str, err: str, seed: int
) -> list[str]:
    """Everything wrong with one `sweeps validate f1 ... fN` run, one line per problem."""
    found: list[str] = []
    if "Traceback" in out + err:
        # Files are validated in order: the crash is at the first file without a result line.
        found.append("a traceback:\n" + err[err.find("Traceback") :][-3000:])
    if returncode not in (0, 2):
        found.append(f"exit status {returncode}, not 0 or 2")
    lines = out.splitlines() + err.splitlines()
    for path, mut in zip(files, muts, strict=True):
        mine = [line for line in lines if line.startswith(f"{path}: ")]
        tag = f"seed {seed}, {mut.describe()} ({path.name})"
        if len(mine) != 1:
            found.append(f"{tag}: {len(mine)} result lines, not 1: {mine}")
            continue
        (line,) = mine
        error = line.removeprefix(f"{path}: error: ") if ": error: " in line else None
        if error is None and not line.startswith(f"{path}: valid; "):
            found.append(f"{tag}: neither valid nor an error: {line}")
        elif error is None and mut.must_fail:
            found.append(f"{tag}: accepted")
        elif error is not None and not names_a_key(error, mut):
            found.append(f"{tag}: the error names neither of {mut.key_names}: {error}")
    return found


def names_a_key(message: str, mut: Mutation) -> bool:
    """Whether `message` names the mutated key (as a whole word), or its parent as a location
    of its own (`search` in `search.method` does not name the mutated `search.seed`). A W&B
    parameter's name is a dotted job path; its last part counts too. A broken document has no
    key: the message says where (a line) or what (the top level) is wrong, or, for an empty
    one, names the keys a spec needs."""
    if not mut.path:
        return bool(re.search(r"line \d+|top level|UTF-8|\bname: Field required", message))
    key, parent = mut.key_names
    for name, section_of_another in ((key, ""), (parent, r"|\.[A-Za-z_]")):
        for word in {name, name.split(".")[-1]} - {""}:
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w{section_of_another})", message):
                return True
    return False


def validate(files: list[Path]) -> subprocess.CompletedProcess[str]:
    """`python -m sweeps validate FILE...` in a fresh interpreter, as a user runs it."""
    env = {
        **os.environ,
        # A mutated model name would otherwise be looked up on the Hub, with minutes of retries
        # where there is no network; offline, an unknown name fails at once.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "sweeps", "validate", *map(str, files)],
        cwd=ROOT,  # the examples' relative data paths are relative to the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


# ---------------------------------------------------------------------------------- the tests


@pytest.mark.timeout(300)
@pytest.mark.parametrize("batch", range(BATCHES))
def test_fuzzed_specs_fail_cleanly_naming_the_key(batch: int, tmp_path: Path) -> None:
    # Examples are dealt in turn, so a batch holds every BATCHES-th example: with 12 examples
    # and 2 batches, six each.
    cases = mutations(SEED, MUTATIONS)[batch::BATCHES]
    files = []
    for raw, mut in cases:
        files.append(tmp_path / f"m{mut.index:04d}-{mut.example}.yaml")
        write(raw, files[-1])
    started = time.perf_counter()
    run = validate(files)
    elapsed = time.perf_counter() - started
    muts = [mut for _, mut in cases]
    found = problems(files, muts, run.returncode, run.stdout, run.stderr, SEED)
    assert not found, f"{len(found)} problem(s) in {len(files)} mutations:\n" + "\n".join(found)
    valid = sum(line.startswith(str(tmp_path)) for line in run.stdout.splitlines())
    # Not vacuous: the batch holds both outcomes, so both paths ran.
    assert 0 < valid < len(files), (valid, len(files))
    print(f"batch {batch}: {len(files)} mutations, {valid} valid, {elapsed:.1f} s")


def test_mutations_are_seeded_and_cover_every_example_and_kind() -> None:
    first, again = mutations(SEED, MUTATIONS), mutations(SEED, MUTATIONS)
    assert [m for _, m in first] == [m for _, m in again]
    assert [m for _, m in mutations(SEED + 1, 50)] != [m for _, m in first[:50]]
    assert len(first) >= 1000
    assert {m.example for _, m in first} == {p.stem for p in EXAMPLES}
    kinds = {m.kind for _, m in first}
    assert kinds == {
        "wrong_type",
        "out_of_bounds",
        "delete_key",
        "unknown_key",
        "swap_distribution",
        "min_above_max",
        "bogus_string",
        "broken_document",
    }
    wandb = {m.kind for _, m in first if m.example == "wandb_bayes"}
    assert {"swap_distribution", "min_above_max", "unknown_key"} <= wandb


def test_the_checks_catch_a_traceback_a_missing_line_and_an_unnamed_key(tmp_path: Path) -> None:
    # Positive controls: each failure the fuzz looks for, planted, is reported.
    files = [tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"]
    muts = [
        Mutation(0, "laptop", "wrong_type", ("search", "num_samples"), "x"),
        Mutation(1, "laptop", "unknown_key", ("job", "training", "zz_unknown"), 1),
        Mutation(2, "laptop", "delete_key", ("name",)),
    ]
    out = f"{files[1]}: valid; labels []\n"
    err = (
        f"{files[0]}: error: 1 invalid field(s); search.method: bad\n"
        "Traceback (most recent call last):\n  ValueError: boom\n"
    )
    found = problems(files, muts, 1, out, err, SEED)
    assert any("a traceback" in p for p in found)
    assert any("exit status 1" in p for p in found)
    assert any("names neither of" in p and "#0" in p for p in found)
    assert any("#1" in p and "accepted" in p for p in found)
    assert any("#2" in p and "0 result lines" in p for p in found)
    # ... and a clean run passes: the key named, a free-mapping key accepted, one line each.
    muts[1] = Mutation(1, "laptop", "unknown_key", ("driver_resources", "zz_unknown"), 1)
    err = f"{files[0]}: error: search.num_samples: not an int\n{files[2]}: error: name: missing\n"
    assert problems(files, muts, 2, out, err, SEED) == []


def test_only_a_causal_lm_named_by_a_hub_id_is_validated_with_the_smoke_model() -> None:
    from trainables.tiny_lm import smoke_model

    swapped = []
    for path in EXAMPLES:
        raw = yaml.safe_load(path.read_text())
        local = local_model(raw)
        if local is raw:
            continue
        swapped.append(path.stem)
        # The model's name alone differs: every other field is validated as shipped.
        assert local["job"]["model"]["name_or_path"] == smoke_model()
        local["job"]["model"]["name_or_path"] = raw["job"]["model"]["name_or_path"]
        assert local == raw
    assert swapped == ["sft"]
    # A causal LM in a local folder is validated as it is.
    folder = {"job": {"task": "causal_lm", "model": {"name_or_path": smoke_model()}}}
    assert local_model(folder) is folder
