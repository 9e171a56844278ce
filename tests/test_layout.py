"""The layout holds: no import cycle in src/ (late imports included), serving loads nothing of training, and no test
imports another test file."""

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


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under ``if TYPE_CHECKING:`` (they name types; they load nothing)."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING"):
            found |= {inner for statement in node.body for inner in ast.walk(statement)}
    return found


def import_graph(package: Path, *, type_checking: bool = True) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere: at the top, in a function, in a method, and
    under ``if TYPE_CHECKING:`` (a circle of types is a circle of concepts, even when it never runs;
    ``type_checking=False`` leaves those out: what importing and running the module can load)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = set() if type_checking else _type_checking_only(tree)
        targets: list[str] = []
        for node in ast.walk(tree):
            if node in skip:
                continue
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


# What serves a model loads nothing of training: the layer rule (shared/STYLE.md). The serving side may use
# the shared decoder (cnnkit.images), the model file (cnnkit.artifact) and the engines, never the code that
# makes a model or reads a dataset.
SERVING = ("cnnkit.engines", "cnnkit.server", "cnnkit.predictor", "cnnkit.batch", "cnnkit.batch_ray",
           "cnnkit.exporting", "cnnkit.loading", "cnnkit.artifact")
TRAINING_SIDE = ("cnnkit.training", "cnnkit.datasets", "cnnkit.presets")


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer_violations(package: Path) -> dict[str, list[str]]:
    """Serving module -> the training-side modules it can load: its imports, theirs, and so on (late imports
    included, ``TYPE_CHECKING`` ones not), each with the packages whose ``__init__`` an import runs."""
    graph = import_graph(package, type_checking=False)
    found = {}
    for start in sorted(m for m in graph if _under(m, SERVING)):
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            parts = module.split(".")
            for nxt in graph.get(module, set()) | {".".join(parts[:i]) for i in range(1, len(parts))}:
                if nxt in graph and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        bad = sorted(m for m in seen if _under(m, TRAINING_SIDE))
        if bad:
            found[start] = bad
    return found


def test_serving_loads_nothing_of_training():
    assert layer_violations(SRC) == {}


def test_a_planted_layer_violation_is_found(tmp_path):
    copy = tmp_path / "cnnkit"
    shutil.copytree(SRC, copy)
    payloads = copy / "server" / "payloads.py"
    payloads.write_text(payloads.read_text() + "\n\ndef _planted():\n    from cnnkit.datasets.lazy import LazyImages\n")
    found = layer_violations(copy)
    # payloads itself, and every serving module that reaches it (the app, the server's CLI)
    assert "cnnkit.datasets.lazy" in found["cnnkit.server.payloads"]
    assert "cnnkit.datasets" in found["cnnkit.server.payloads"]
    assert "cnnkit.server.app" in found and "cnnkit.predictor" not in found


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
