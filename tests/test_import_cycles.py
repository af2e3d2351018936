"""The import graph of src/thorgen has no cycles, and the rooms import in one direction.

Imports are read from the source with ``ast``: an import inside a function counts (a late import
hides an arrow, it does not remove it); one under ``if TYPE_CHECKING:`` does not (it never runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "thorgen"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, known: set[str], src: Path = SRC) -> set[str]:
    """The thorgen modules ``path`` imports at run time (a name imported from a package that is a
    module of its own counts as that module)."""
    me = module_name(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    found.add(f"{base}.{alias.name}")
                elif base in known:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(me)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    known = {module_name(path, root.parent) for path in files}
    return {module_name(path, root.parent): imports_of(path, known, root.parent) for path in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle's modules (each strongly connected group of more than one module), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_src_thorgen_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_jobs_know_families_only_through_base():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("thorgen.jobs"):
            assert {t for t in targets if t.startswith("thorgen.families")} <= {"thorgen.families.base"}, module


def test_the_runtime_in_models_imports_no_family():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("thorgen.models"):
            assert not {t for t in targets if t.startswith("thorgen.families")}, module


@pytest.mark.parametrize("late", [True, False])
def test_the_check_sees_a_new_cycle_late_import_or_not(tmp_path: Path, late: bool):
    """The check itself: two modules that import each other (one of them inside a function) are a
    cycle; the same import under ``if TYPE_CHECKING:`` is not."""
    package = tmp_path / "thorgen"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from thorgen.b import thing\n")
    body = "def f():\n    from thorgen import a\n" if late else \
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from thorgen import a\n"
    (package / "b.py").write_text(body + "thing = 1\n")
    found = cycles(import_graph(package))
    assert found == ([["thorgen.a", "thorgen.b"]] if late else [])
