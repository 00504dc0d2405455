"""MkDocs hook: the pages generated on every build, so that they cannot go stale.

- `reference/spec.md`, the spec reference: `sweeps.spec.schema.spec_schema()` (what
  `sweeps schema` prints and editors read) rendered as one table per section of a sweep file.
- `reference/modules.md`, the module index: every module of `sweeps/` and `trainables/` with
  the first paragraph of its docstring, read from the source (nothing imported).

They are no files in `docs/`: `on_files` adds them. `spec_page` and `modules_page` are plain
Python, testable without MkDocs.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sweeps", "trainables")
_PARAM = "Param"


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site's files (MkDocs' `on_files` event)."""
    from mkdocs.structure.files import File

    for page, render in PAGES.items():
        files.append(File.generated(config, page, content=render()))
    return files


def spec_page() -> str:
    """The spec reference of the schema this tree validates against."""
    from sweeps.spec.schema import spec_schema

    return render_spec(spec_schema())


def modules_page(root: Path = ROOT) -> str:
    """The module index's Markdown: one table per package folder, a row per module.

    Example:
        >>> "`sweeps/cli.py`" in modules_page()
        True
    """
    lines = [
        "# Module index",
        "",
        "Every module with the first paragraph of its docstring, generated from the source when",
        "the site is built. The tour and the concept table: [Architecture](../architecture.md).",
        "",
    ]
    for package in PACKAGES:
        for folder in sorted({p.parent for p in (root / package).rglob("*.py")}):
            lines += [f"## `{folder.relative_to(root).as_posix()}/`", ""]
            lines += ["| module | what it is |", "| --- | --- |"]
            for path in sorted(folder.glob("*.py")):
                doc = ast.get_docstring(ast.parse(path.read_text())) or ""
                first = doc.strip().split("\n\n")[0]
                lines.append(f"| `{path.relative_to(root).as_posix()}` | {_cell(first)} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


#: Each generated page (its path under `docs/`) and what renders it.
PAGES: dict[str, Callable[[], str]] = {
    "reference/spec.md": spec_page,
    "reference/modules.md": modules_page,
}


def render_spec(schema: dict[str, Any]) -> str:
    """The reference page's Markdown for a sweep-file schema as `spec_schema()` builds it.

    Example:
        >>> from sweeps.spec.schema import spec_schema
        >>> "## `job.training` { #job-training }" in render_spec(spec_schema())
        True
    """
    defs: dict[str, Any] = schema["definitions"]
    sections = _sections(defs, "SweepSpec", "")
    anchors = {name: _anchor(path) for path, name in sections}
    anchors[_PARAM] = "search-dimension"
    lines = [
        "# Spec reference",
        "",
        "Every key of a sweep file, generated when the site is built from the spec's JSON Schema",
        "(`sweeps schema` prints the same schema; `sweeps/spec/sweep.schema.json` is its",
        "committed copy, which editors read). A guide to writing a spec is",
        "[Writing a spec](../spec.md); `sweeps validate SPEC` checks what a schema cannot",
        "(value combinations, data files and columns, the model).",
        "",
    ]
    for path, name in sections:
        title = f"`{path}`" if path else "Top level"
        lines += [f"## {title} {{ #{_anchor(path)} }}", ""]
        lines += _prose(defs[name].get("description", ""))
        lines += _table(defs[name], anchors)
    lines += _search_dimension(defs[_PARAM], anchors)
    lines += _task_metrics(defs["SweepSpec"])
    lines += _wandb_format(defs, anchors)
    return "\n".join(lines).rstrip() + "\n"


def _sections(defs: dict[str, Any], name: str, path: str) -> list[tuple[str, str]]:
    """(dotted path, definition) of an object section and, depth first, every one inside."""
    out = [(path, name)]
    for key, node in defs[name].get("properties", {}).items():
        child = _ref_of(node)
        if child is not None and child != _PARAM and "properties" in defs[child]:
            out += _sections(defs, child, f"{path}.{key}" if path else key)
    return out


def _ref_of(node: dict[str, Any]) -> str | None:
    """The definition a property is, directly or as the non-null option of an `anyOf`."""
    options = [node, *node.get("anyOf", [])]
    refs = [o["$ref"] for o in options if "$ref" in o]
    return refs[0].rsplit("/", 1)[-1] if refs else None


def _anchor(path: str) -> str:
    return path.replace(".", "-").replace("_", "-") if path else "top-level"


def _prose(description: str) -> list[str]:
    """A definition's docstring without its `Attributes:` (the table has them) and examples."""
    text = re.split(r"\n\s*(?:Attributes|Example|Examples):\s*\n", description)[0].strip()
    return [_escape(text), ""] if text else []


def _table(model: dict[str, Any], anchors: dict[str, str]) -> list[str]:
    required = set(model.get("required", []))
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, node in model.get("properties", {}).items():
        default = "required" if key in required else _default(node)
        rows.append(
            f"| `{key}` | {_kind(node, anchors)} | {default} | "
            f"{_cell(node.get('description', ''))} |"
        )
    return [*rows, ""]


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    if isinstance(node["default"], dict) and node["default"]:
        return "see its section"
    return f"`{json.dumps(node['default'])}`"


def _kind(node: dict[str, Any], anchors: dict[str, str]) -> str:
    """A property's type in words: links to sections, enums, ranges, lists, maps."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        label = "search dimension" if name == _PARAM else "section"
        return f"[{label}](#{anchors[name]})" if name in anchors else name
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        text = " or ".join(_kind(o, anchors) for o in options)
        return text + (" or `null`" if len(options) < len(node["anyOf"]) else "")
    if "enum" in node:
        return " \\| ".join(f"`{_value(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{_value(node['const'])}`"
    kind = node.get("type", "any")
    if kind == "array":
        items = node.get("items", {})
        if isinstance(items, list):
            kind = "[" + ", ".join(_kind(i, anchors) for i in items) + "]"
        else:
            kind = "list" + (f" of {_kind(items, anchors)}" if items else "")
    elif kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            kind = f"map of name → {_kind(values, anchors)}"
        elif "properties" in node and all(
            _ref_of(v) == _PARAM for v in node["properties"].values()
        ):
            kind = f"map of job field → {_kind({'$ref': _PARAM}, anchors)}"
        elif "propertyNames" in node:
            kind = "map of job field → value"
        else:
            kind = "object"
    return kind + _bounds(node)


def _bounds(node: dict[str, Any]) -> str:
    marks = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
        "minItems": "items ≥",
        "maxItems": "items ≤",
        "minLength": "length ≥",
    }
    bounds = [f"{mark} {node[key]}" for key, mark in marks.items() if key in node]
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    if "minItems" in node and node.get("minItems") == node.get("maxItems"):
        bounds = [b for b in bounds if not b.startswith("items")]
    return f" ({', '.join(bounds)})" if bounds else ""


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _search_dimension(param: dict[str, Any], anchors: dict[str, str]) -> list[str]:
    return [
        "## Search dimension { #search-dimension }",
        "",
        "A value of `search.space`: exactly one distribution key, with an optional `q` step and",
        "`when` condition. What each distribution draws is described under",
        "[Writing a spec](../spec.md#distributions).",
        "",
        *_table(param, anchors),
    ]


def _task_metrics(spec: dict[str, Any]) -> list[str]:
    """The per-task metric rule the schema states as `if job.task == T then ...` blocks."""
    rows = ["| `job.task` | metrics it reports |", "| --- | --- |"]
    for rule in spec.get("allOf", []):
        task = rule["if"]["properties"]["job"]["properties"]["task"]["const"]
        metrics = rule["then"]["properties"]["search"]["properties"]["metric"]["enum"]
        rows.append(f"| `{task}` | " + ", ".join(f"`{m}`" for m in metrics) + " |")
    return [
        "## Metrics by task { #metrics-by-task }",
        "",
        "`search.metric`, `promote.metric` and `job.training.monitor` name one of the metrics the",
        "job's task reports:",
        "",
        *rows,
        "",
    ]


def _wandb_format(defs: dict[str, Any], anchors: dict[str, str]) -> list[str]:
    names = [n for n in defs["WandbParameters"]["properties"] if "." not in n]
    leaf = defs["WandbParameter"]["anyOf"][0]
    return [
        "## A W&B sweep file { #wandb-sweep-file }",
        "",
        "A file with top-level `parameters` and no `search` is read as a W&B sweep file (the",
        "mapping to this spec is on the [W&B page](../wandb.md#wb-sweep-files-unchanged)).",
        "",
        *_table(defs["WandbSweep"], anchors),
        "A parameter is a block of these keys, or a nested `parameters:` block:",
        "",
        *_table(leaf, anchors),
        "Besides dotted job fields, parameter names may be these W&B / Hugging Face names: "
        + ", ".join(f"`{n}`" for n in names)
        + ".",
        "",
    ]


def _cell(text: str) -> str:
    """Text as one table cell: on one line, `|` escaped outside code spans."""
    return _escape(" ".join(text.split()), {"|": "\\|"})


def _escape(text: str, more: dict[str, str] | None = None) -> str:
    """`<` and `>` (which Markdown would read as HTML), and `more`, outside code spans."""
    table = {"<": "&lt;", ">": "&gt;", **(more or {})}
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = "".join(table.get(c, c) for c in parts[i])
    return "`".join(parts)
