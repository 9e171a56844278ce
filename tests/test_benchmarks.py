"""The benchmark scripts still fit the code they measure: every name they import from cnnkit exists.

Benchmarks run by hand, not in CI; when `cnnkit.training` became a package, three of them kept
importing `fit` from it and broke unseen. This reads each script's imports (its syntax tree, without
running it) and checks that every `from cnnkit... import name` names something that is there, and
that nothing the script calls is a module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import types
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py")) + sorted((BENCHMARKS / "peers").glob("*.py"))


def cnnkit_imports(script: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from cnnkit... import name`` in ``script``, nested ones included."""
    tree = ast.parse(script.read_text(), filename=str(script))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cnnkit"
            for alias in node.names]


def called_names(script: Path) -> set[str]:
    """Every bare name ``script`` calls (``fit(...)``)."""
    tree = ast.parse(script.read_text(), filename=str(script))
    return {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(s.relative_to(BENCHMARKS)) for s in SCRIPTS])
def test_every_cnnkit_name_a_benchmark_imports_exists(script):
    assert problems(script) == []


def problems(script: Path) -> list[str]:
    """What is wrong with ``script``'s cnnkit imports (nothing: an empty list)."""
    found = []
    calls = called_names(script)
    for module, name in cnnkit_imports(script):
        package = importlib.import_module(module)
        submodule = hasattr(package, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
        if not hasattr(package, name) and not submodule:
            found.append(f"{script.name} imports {name} from {module}, which has no such name")
        elif name in calls and isinstance(getattr(package, name, None) or importlib.import_module(f"{module}.{name}"),
                                          types.ModuleType):
            found.append(f"{script.name} calls {name}, a module of {module}")
    return found


def test_the_check_finds_a_missing_name_and_a_called_module(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("def run():\n    from cnnkit.training.fit import no_such_function\n"
                      "    from cnnkit.training import fit\n    fit(1)\n")
    assert problems(script) == ["broken.py imports no_such_function from cnnkit.training.fit, which has no such name",
                                "broken.py calls fit, a module of cnnkit.training"]
