"""Reading a YAML config file and explaining validation errors field by field: what both
packages' files (a fine-tuning job, a sweep spec) go through before their schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from trainables.errors import ConfigError


def read_yaml_mapping(
    path: str | Path, what: str = "config", error: type[ConfigError] = ConfigError
) -> dict[str, Any]:
    """Reads a YAML file whose top level must be a mapping; raises `error` otherwise (not
    found, not UTF-8, not YAML: naming the line and column)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not a text (UTF-8) file: byte {exc.start} is {exc.object[exc.start]:#x}"
        ) from None
    if not isinstance(raw, dict):
        raise error(f"{path}: the top level must be a mapping of fields")
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and where, in one line: `line 2, column 6: expected ...`."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (
        f" ({context})" if context else ""
    )


def format_validation_error(
    exc: ValidationError, source: str, root: type[BaseModel] | None = None
) -> str:
    """One line per problem: `field.path: message (got value)`.

    `root` is the model validated, used to list the valid fields next to an unknown one.
    """
    lines = [f"{source}: {exc.error_count()} invalid field(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            valid = _fields_at(root, err["loc"][:-1]) if root is not None else []
            msg = f"unknown field; valid fields here: {', '.join(valid)}"
        got = err.get("input")
        shown = "" if isinstance(got, dict) or err["type"] == "value_error" else f" (got {got!r})"
        lines.append(f"  {where + ': ' if where else ''}{msg}{shown}")
    return "\n".join(lines)


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the section at `loc` (a path of field names from `root`)."""
    section = root
    for part in loc:
        field = section.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        section = annotation
    return list(section.model_fields)
