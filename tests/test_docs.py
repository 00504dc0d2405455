"""The documentation against the tree: the README stays a front door, every relative link and
every repository path the pages name resolves, the README's spec is the shipped one, the
commands are the CLI's, the concept table's homes import, and the generated pages cover what
they generate from. Each check has a planted failure it must report (its positive control)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from sweeps import cli
from sweeps.spec.dotted import field_paths

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
MAX_README_LINES = 200


def hook() -> ModuleType:
    """`docs/hooks/generated_pages.py`, the MkDocs hook (no package: loaded by path)."""
    spec = importlib.util.spec_from_file_location(
        "generated_pages", DOCS / "hooks" / "generated_pages.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATED = {DOCS / page for page in hook().PAGES}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- the README ---------------------------------------------------------------------------


def test_the_readme_is_a_front_door_of_at_most_200_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_two_commands_come_first() -> None:
    sections = re.findall(r"^## (.+)$", README.read_text(), re.M)
    assert sections[0] == "The two commands", sections
    first = README.read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    assert "make sweep" in first and "make test" in first


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("page", [README, DOCS / "spec.md"], ids=rel)
def test_the_spec_shown_first_is_the_laptop_example(page: Path) -> None:
    shown = yaml.safe_load(yaml_blocks(page.read_text())[0])
    shipped = yaml.safe_load((ROOT / "sweeps/examples/laptop.yaml").read_text())
    assert shown == shipped


@pytest.mark.parametrize("page", [README, DOCS / "commands.md"], ids=rel)
def test_the_command_lists_are_the_cli_s(page: Path) -> None:
    listed = re.findall(r"^sweeps (\w+)", page.read_text(), re.M)
    assert sorted(set(listed)) == sorted(cli.COMMANDS), listed


# --- links and paths ----------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"```.*?```", re.S)


def broken_links(page: Path, text: str) -> list[str]:
    """The relative links (and images) of a page whose target is no file (nor generated)."""
    broken = []
    for match in LINK.finditer(CODE_BLOCK.sub("", text)):
        target = (match[1] or match[2]).split("#", 1)[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        path = (page.parent / target).resolve()
        if not (path.is_file() or path in GENERATED):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", [README, *PAGES], ids=rel)
def test_every_relative_link_resolves_to_a_file(page: Path) -> None:
    assert broken_links(page, page.read_text()) == []


def test_a_planted_broken_link_is_reported() -> None:
    text = "[fine](quickstart.md#x) [generated](reference/spec.md) [planted](nowhere.md)"
    assert broken_links(DOCS / "index.md", text) == ["nowhere.md"]


# A repository path in backticks: a top folder of this tree, then a file or folder name.
REPO_PATH = re.compile(r"`((?:sweeps|trainables|cluster|bench|tests|docs|\.ci)/[\w./-]*)`")


def missing_paths(text: str) -> list[str]:
    return [p for p in REPO_PATH.findall(text) if not (ROOT / p).exists()]


@pytest.mark.parametrize("page", [README, *PAGES], ids=rel)
def test_every_repository_path_named_exists(page: Path) -> None:
    assert missing_paths(page.read_text()) == []


def test_a_planted_missing_path_is_reported() -> None:
    text = "`sweeps/cli.py`, `sweeps/examples/`, `results/models/laptop`, `sweeps/nowhere.py`"
    assert missing_paths(text) == ["sweeps/nowhere.py"]


def nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return [p for item in nav for p in nav_pages(item)]


def test_the_site_navigation_holds_every_page_and_only_pages() -> None:
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in [*PAGES, *GENERATED]}
    assert sorted(nav) == sorted(pages)


# --- the concept table --------------------------------------------------------------------

ARCHITECTURE = DOCS / "architecture.md"
ROW = re.compile(r"^\| (.+?) \| `([\w.]+):([\w.]+)` \|$")


def concept_rows(text: str) -> list[tuple[str, str, str]]:
    """(concept, module, attribute) of each row of the page's concept table."""
    table = text.split("## Concept table", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")][2:]
    rows = []
    for line in lines:
        match = ROW.match(line)
        assert match, f"not a `module:attribute` row: {line}"
        rows.append((match[1], match[2], match[3]))
    return rows


def missing_home(module: str, attribute: str) -> str | None:
    """Why `module:attribute` does not name a thing, or None when it does."""
    try:
        found: Any = importlib.import_module(module)
    except ImportError as exc:
        return f"no module {module} ({exc})"
    for part in attribute.split("."):
        if not hasattr(found, part):
            return f"{module} has no {attribute}"
        found = getattr(found, part)
    return None


CONCEPTS = concept_rows(ARCHITECTURE.read_text())


def test_the_concept_table_has_rows() -> None:
    assert len(CONCEPTS) >= 20


@pytest.mark.parametrize(("concept", "module", "attribute"), CONCEPTS, ids=[c[0] for c in CONCEPTS])
def test_each_concept_s_home_exists(concept: str, module: str, attribute: str) -> None:
    problem = missing_home(module, attribute)
    assert problem is None, f"concept table row {concept!r}: {problem}"


def test_a_planted_wrong_home_is_reported() -> None:
    table = (
        "## Concept table\n\n| concept | its home |\n| --- | --- |\n"
        '| "stopped early" | `sweeps.results.results_log:ended_early` |\n'
        "| the spec | `sweeps.spec.nowhere:SweepSpec` |\n"
        "| the best trial | `sweeps.results.queries:SweepResults.best` |\n"
    )
    problems = {c: missing_home(m, a) for c, m, a in concept_rows(table)}
    assert problems['"stopped early"'] == "sweeps.results.results_log has no ended_early"
    assert (problems["the spec"] or "").startswith("no module sweeps.spec.nowhere")
    assert problems["the best trial"] is None


def test_every_home_is_unique() -> None:
    homes = [f"{m}:{a}" for _, m, a in CONCEPTS]
    assert len(homes) == len(set(homes))


# --- the generated pages ------------------------------------------------------------------


def test_the_spec_reference_has_every_job_field() -> None:
    page = hook().spec_page()
    absent = []
    for path in field_paths():
        *section, key = path.split(".")
        heading = "## `" + ".".join(["job", *section]) + "`"
        rows = page.split(heading, 1)[1].split("\n## ", 1)[0] if heading in page else ""
        if f"| `{key}` |" not in rows:
            absent.append(path)
    assert absent == []


def test_the_spec_reference_has_every_top_level_key_and_task() -> None:
    page = hook().spec_page()
    top = page.split("## Top level", 1)[1].split("\n## ", 1)[0]
    shipped = yaml.safe_load((ROOT / "sweeps/examples/laptop.yaml").read_text())
    assert all(f"| `{key}` |" in top for key in shipped)
    metrics = page.split("## Metrics by task", 1)[1].split("\n## ", 1)[0]
    assert "| `causal_lm` |" in metrics and "`val_perplexity`" in metrics


def test_the_module_index_has_every_module() -> None:
    page = hook().modules_page()
    modules = [rel(p) for pkg in ("sweeps", "trainables") for p in (ROOT / pkg).rglob("*.py")]
    assert [m for m in modules if f"| `{m}` |" not in page] == []
