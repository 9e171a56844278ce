"""The benchmark scripts still fit the code they measure, and share their scaffolding through common.py.

Benchmarks run by hand, not in CI; when `cnnkit.training` became a package, three of them kept
importing `fit` from it and broke unseen. This reads each script's imports (its syntax tree, without
running it) and checks that every `from cnnkit... import name` names something that is there, and
that nothing the script calls is a module. Then benchmarks/common.py itself: the JSON record, path
arguments, and `cnnkit train` (a stand-in command, so nothing trains), and that no script writes its
own copy of them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import stat
import sys
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


# -- benchmarks/common.py ------------------------------------------------------------------------


@pytest.fixture
def common(monkeypatch):
    """benchmarks/common.py, imported as the scripts import it (their folder first on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "common", raising=False)
    module = importlib.import_module("common")
    assert Path(module.__file__) == BENCHMARKS / "common.py"
    return module


def test_common_names_the_run_folder_files_as_cnnkit_does(common):
    from cnnkit import artifact

    assert (common.METRICS, common.CONFIG) == (artifact.METRICS, artifact.CONFIG)


def test_save_writes_date_machine_and_fields(common, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    result = common.save("probe", run=tmp_path / "run", rows=[1])
    written = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert written == result | {"run": str(tmp_path / "run")}
    assert list(written) == ["date", "machine", "run", "rows"]
    assert re.fullmatch(r"\d+ cores, .+, .+", written["machine"])
    assert written["machine"] in capsys.readouterr().out


def test_given_path_is_absolute_against_the_starting_folder(common, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert common.given_path("runs/demo") == tmp_path / "runs" / "demo"
    assert common.given_path("/srv/x/../y") == Path("/srv/y")


FAKE_CNNKIT = """#!{python}
import json, pathlib, sys
args = sys.argv[1:]
if "--fail" in args:
    sys.exit("Error: told to fail")
out = pathlib.Path(args[args.index("--out") + 1])
out.mkdir(parents=True)
(out / "metrics.json").write_text(json.dumps({{"test_accuracy": 0.5, "args": args}}))
if args[0] == "train":
    (out / "config.json").write_text(json.dumps({{"train": {{"epochs": 1}}}}))
print("Class weights: none")
"""


@pytest.fixture
def fake_cnnkit(common, monkeypatch, tmp_path):
    """A stand-in for .venv/bin/cnnkit that writes a run folder at once."""
    script = tmp_path / "cnnkit"
    script.write_text(FAKE_CNNKIT.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(common, "CNNKIT", script)
    return script


def test_train_runs_the_command_then_reads_the_run_folder(common, fake_cnnkit, tmp_path, capsys):
    trained = common.train(["mnist", "--seed", "0"], tmp_path / "out" / "run", env={"CNNKIT_PROBE": "1"}, echo=100)
    assert trained.metrics["args"] == ["train", "mnist", "--seed", "0", "--out", str(tmp_path / "out" / "run"),
                                       "--overwrite"]
    assert trained.config == {"train": {"epochs": 1}}
    assert trained.stdout == "Class weights: none\n"
    assert trained.wall_seconds >= 0 and trained.peak_rss_mb > 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"$ {fake_cnnkit} train mnist") and "Class weights: none" in printed


def test_train_reads_no_config_where_the_command_writes_none(common, fake_cnnkit, tmp_path):
    trained = common.train(["article-000"], tmp_path / "run", command="reproduce")
    assert trained.metrics["args"][:2] == ["reproduce", "article-000"] and trained.config == {}


def test_a_failed_train_ends_the_benchmark_with_its_error(common, fake_cnnkit, tmp_path):
    with pytest.raises(SystemExit, match=r"--overwrite failed with exit status 1:\nError: told to fail"):
        common.train(["--fail"], tmp_path / "run")


# What common.py does, written nowhere else: the date and machine of the record, the run folder's files and
# the project's cnnkit command; and every path argument made absolute as it is parsed (type=given_path).
# accurate_replica.py is left out: it runs alone on a lent GPU, with PyTorch and nothing of cnnkit's.
OWN_COPIES = {"/proc/cpuinfo", "metrics.json", "config.json", ".venv"}


def own_copies(script: Path) -> list[str]:
    """What ``script`` writes again that benchmarks/common.py provides (nothing: an empty list)."""
    found = []
    for node in ast.walk(ast.parse(script.read_text(), filename=str(script))):
        if isinstance(node, ast.Constant) and node.value in OWN_COPIES:
            found.append(repr(node.value))
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "datetime.date.today":
            found.append("datetime.date.today")
        elif isinstance(node, ast.keyword) and node.arg == "type" and ast.unparse(node.value) == "Path":
            found.append("type=Path")
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(s.relative_to(BENCHMARKS)) for s in SCRIPTS])
def test_no_benchmark_keeps_its_own_copy_of_common(script):
    if script.name in ("common.py", "accurate_replica.py"):
        return
    assert own_copies(script) == []


def test_the_copy_check_finds_a_hand_rolled_record(tmp_path):
    script = tmp_path / "copy.py"
    script.write_text("import datetime\nparser.add_argument('folder', type=Path)\n"
                      "record = {'date': datetime.date.today().isoformat()}\nopen(run / 'metrics.json')\n")
    assert sorted(own_copies(script)) == ["'metrics.json'", "datetime.date.today", "type=Path"]
