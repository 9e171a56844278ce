"""What every benchmark shares: the machine line, the JSON record, path arguments, and one `cnnkit train`.

Scripts run from anywhere: ``sys.path[0]`` is this folder, so each imports ``from common import ...``.
Standard library only, so a script that keeps TensorFlow out of its own process (serve_peers.py,
serve_load.py) can import it too.

    >>> trained = train(["mnist", "--recipe", "fast", "--seed", "0"], OUT / "fast-seed0")  # doctest: +SKIP
    >>> save("fast", rows=[{"test_accuracy": trained.metrics["test_accuracy"]}])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
CNNKIT = ROOT / ".venv" / "bin" / "cnnkit"
# A run folder's files, as cnnkit.artifact names them (METRICS, CONFIG; tests/test_benchmarks.py checks
# they agree): importing cnnkit.artifact here would load Keras into every benchmark's own process.
METRICS, CONFIG = "metrics.json", "config.json"


def machine() -> str:
    """Cores, CPU model (from /proc/cpuinfo where there is one) and platform."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.platform()}"


def save(name: str, **fields: Any) -> dict[str, Any]:
    """Write ``benchmarks/out/<name>.json`` (date, machine, ``fields``), print the date and machine, return it.

    Paths among ``fields`` are written as text.
    """
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), **fields}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{result['date']}, {result['machine']}\n")
    return result


def given_path(text: str) -> Path:
    """An argparse ``type`` for every path argument: absolute, against the folder the script was started from.

    Made absolute while the arguments are parsed, before any subprocess starts in another working
    folder (serve_peers.py's servers run in a temporary one, serve_load.py's in the repository root).
    ``os.path.abspath``, not ``Path.resolve``: a link keeps the name it was given.
    """
    return Path(os.path.abspath(text))


@dataclass
class Trained:
    """What one `cnnkit train` process left: its run folder's metrics and config, its output and its cost."""

    folder: Path
    metrics: dict[str, Any]
    config: dict[str, Any]  # empty where the command wrote no config.json
    stdout: str
    wall_seconds: float  # the whole command, interpreter start-up and data loading included
    peak_rss_mb: float  # the process's own peak resident memory (with any children it waited for)


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """The ``src`` folder of git ``revision``, checked out (``git worktree add``) into a temporary folder for
    the block; for :func:`train`'s ``src``, to run another version of cnnkit beside this one."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", revision], capture_output=True, text=True,
                            check=True).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="cnnkit-rev-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                   capture_output=True)
    try:
        yield tree / "src"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        tree.parent.rmdir()


def cnnkit_command(src: Path | None, env: Mapping[str, str]) -> list[str]:
    """How to start cnnkit: the .venv's command, or with ``src`` this interpreter on that source tree, after
    checking that ``import cnnkit`` loads from it (SystemExit otherwise)."""
    if src is None:
        return [str(CNNKIT)]
    out = subprocess.run([sys.executable, "-c", "import cnnkit, os; print(os.path.dirname(cnnkit.__file__))"],
                         env={**env, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True).stdout
    if Path(out.strip()).resolve() != (src / "cnnkit").resolve():
        raise SystemExit(f"PYTHONPATH={src} imports cnnkit from {out.strip()}, not from {src / 'cnnkit'}.")
    return [sys.executable, "-m", "cnnkit.cli"]


def train(args: Sequence[str | os.PathLike[str]], out: Path, *, command: str = "train",
          env: Mapping[str, str] | None = None, echo: int = 0, src: Path | None = None) -> Trained:
    """Run ``cnnkit COMMAND ARGS --out OUT --overwrite`` (train, or reproduce, which trains the same way) in
    its own process with the project's .venv, then read the run folder it wrote.

    ``env`` adds variables to this process's environment; ``echo`` prints that many characters of the
    end of the command's output once it is done; ``src`` runs the cnnkit of that source tree instead
    (:func:`checkout`). A failed command ends the benchmark (SystemExit) with the end of its stderr.
    """
    env = {**os.environ, **(env or {}), **({"PYTHONPATH": str(src)} if src else {})}
    cmd = [*cnnkit_command(src, env), command, *map(str, args), "--out", str(out), "--overwrite"]
    print("$", " ".join(cmd), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:  # files: a full pipe would stall it
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
        try:
            # wait4, not wait: the child's own rusage. RUSAGE_CHILDREN's peak is the largest of every child so far.
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen, so it never waits again
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    if echo:
        print(output[-echo:], flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {proc.returncode}:\n{errors[-3000:]}")
    metrics, config = read_run(out)
    return Trained(folder=out, metrics=metrics, config=config, stdout=output, wall_seconds=round(wall, 1),
                   peak_rss_mb=usage.ru_maxrss / 1024)  # Linux: ru_maxrss in KiB


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run folder's metrics.json and config.json (empty where there is none), for a benchmark
    that starts `cnnkit train` its own way (train_memory.py samples its memory while it runs)."""
    config = folder / CONFIG
    metrics = json.loads((folder / METRICS).read_text())
    return metrics, json.loads(config.read_text()) if config.is_file() else {}
