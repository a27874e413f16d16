"""The README and the docs render as written: every code fence is closed (an
unclosed one turned half the README into one code block), every Python snippet of
the README runs as written (it builds its DAGs, operators and triggers), and the
guides show code from files the tests run, never a copy."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
INCLUDE = re.compile(r"```\{literalinclude\} (\S+)\n((?::[^\n]*\n)*)```")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def code_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, info string, code)`` of each fenced block, as CommonMark reads them.

    :raises AssertionError: a fence is left open, or a closing fence carries text
        (CommonMark reads that as another opening fence).
    """
    blocks: list[tuple[int, str, str]] = []
    opened: tuple[int, str, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened, lines = (number, match.group(2), match.group(3).strip()), []
            continue
        if match and match.group(2).startswith(opened[1]):
            assert not match.group(3).strip(), (
                f"line {number}: a closing fence with text after it ({line.strip()!r}) "
                f"opens another block"
            )
            blocks.append((opened[0], opened[2], "\n".join(lines)))
            opened = None
        else:
            lines.append(line)
    assert opened is None, f"the code fence opened on line {opened[0]} is never closed"
    return blocks


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_code_fence_is_closed(page: Path) -> None:
    code_blocks(page.read_text())


def test_an_unclosed_fence_is_caught() -> None:
    with pytest.raises(AssertionError, match="never closed"):
        code_blocks("text\n```python\nx = 1\n")
    with pytest.raises(AssertionError, match="closing fence with text"):
        code_blocks("```python\nx = 1\n```Bad input\n")


README_SNIPPETS = [
    (line, code) for line, info, code in code_blocks((ROOT / "README.md").read_text())
    if info == "python"
]  # fmt: skip


def undefined_names(tree: ast.AST) -> set[str]:
    """Names a snippet reads that it neither imports nor defines."""
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return read - defined


def test_a_snippet_reading_a_name_it_never_defines_is_caught() -> None:
    assert undefined_names(ast.parse("import os\nwith open(os.sep) as f:\n    g(f, x)")) == {
        "g", "x"
    }  # fmt: skip


@pytest.mark.parametrize(
    "code", [code for _, code in README_SNIPPETS], ids=[f"line {n}" for n, _ in README_SNIPPETS]
)
def test_a_readme_snippet_runs_as_written(code: str, airflow_db: str) -> None:
    tree = ast.parse(code)
    assert not undefined_names(tree)
    if "AirflowDeployment(" in code:
        # It starts PostgreSQL and Airflow's components, as tests/deployment does at
        # length: here only its imports run (every name it reads is checked above).
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        tree = ast.Module(body=imports, type_ignores=[])
    exec(compile(tree, "README.md snippet", "exec"), {"__name__": "readme_snippet"})


GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))


@pytest.mark.parametrize("guide", GUIDES, ids=lambda page: page.name)
def test_a_guide_includes_its_code_from_a_file_the_tests_run(guide: Path) -> None:
    text = guide.read_text()
    assert not [info for _, info, _ in code_blocks(text) if info == "python"], (
        "a guide's Python is included from an example DAG or a test, not copied"
    )
    includes = INCLUDE.findall(text)
    assert includes, "a guide shows the code it is about"
    for target, options in includes:
        path = (guide.parent / target).resolve()
        assert path.is_relative_to(ROOT / "example_dags") or path.is_relative_to(ROOT / "tests")
        source = path.read_text()
        for marker in re.findall(r':(?:start-after|end-before): "([^"]+)"', options):
            assert source.count(marker) == 1, f"{marker} in {path.name}"
