"""Dotted keys: how a search space, `--set` overrides and W&B configs name a field of a job."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from sweeps.errors import SpecError
from trainables.config import FinetuneConfig

#: Fields of a job that the sweep sets for each trial: never searched, never in a spec's job.
SWEEP_SET_FIELDS = ("name", "storage_path")


def field_paths(model: type[BaseModel] = FinetuneConfig, prefix: str = "") -> list[str]:
    """Every dotted leaf field of a job that a search space may name."""
    paths = []
    for name, info in model.model_fields.items():
        if not prefix and model is FinetuneConfig and name in SWEEP_SET_FIELDS:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += field_paths(annotation, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of `tree` with the dotted `key` set to `value`."""
    out = copy.deepcopy(tree)
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"{key}: {part!r} is a value, not a section")
    node[leaf] = value
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as one level of dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies `--set a.b.c=value` overrides (values parsed as YAML scalars)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. search.num_samples=20")
        # Space keys contain dots themselves: search.space.<dotted path>.<distribution>.
        if key.startswith("search.space."):
            rest = key.removeprefix("search.space.")
            path, _, dist = rest.rpartition(".")
            raw = copy.deepcopy(raw)
            raw.setdefault("search", {}).setdefault("space", {}).setdefault(path, {})[dist] = (
                yaml.safe_load(text)
            )
            continue
        raw = set_dotted(raw, key, yaml.safe_load(text))
    return raw
