"""The layout holds: no import cycle in src/ (late imports included), and no test imports another test file."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnkit"
TESTS = Path(__file__).resolve().parent
SUPPORT = {"helpers", "photo_factory"}  # the modules tests share; they are not test files


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere: at the top, in a function, in a method, and
    under ``if TYPE_CHECKING:`` (a circle of types is a circle of concepts, even when it never runs)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from this module's package
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from cnnkit import artifact` imports the module cnnkit.artifact; `from a.b import f`, a.b
                targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                            for alias in node.names]
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of modules of two or more (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_in_src():
    graph = import_graph(SRC)
    assert len(graph) > 50 and graph["cnnkit.training.run"]  # the graph was really read
    assert find_cycles(graph) == []


def test_a_planted_cycle_is_found_even_as_a_late_import(tmp_path):
    copy = tmp_path / "cnnkit"
    shutil.copytree(SRC, copy)
    labels = copy / "datasets" / "labels.py"
    labels.write_text(labels.read_text() + "\n\ndef _planted():\n    from cnnkit.training.run import train\n")
    cycles = find_cycles(import_graph(copy))
    assert len(cycles) == 1 and {"cnnkit.datasets.labels", "cnnkit.training.run"} <= set(cycles[0])


def test_late_and_type_checking_imports_count(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    return 1\n")
    assert find_cycles(import_graph(package)) == []
    for back in ("def f():\n    from pkg.a import thing\n", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from pkg import a\n", "from . import a\n"):
        (package / "b.py").write_text(back)
        assert find_cycles(import_graph(package)) == [["pkg.a", "pkg.b"]], back


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_no_test_file_imports_another(path):
    tests = {p.stem for p in TESTS.glob("*.py")} - SUPPORT
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & tests, f"{path.name} imports from {sorted(imported & tests)}; share code through helpers.py"
