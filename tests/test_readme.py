"""The README walked as a newcomer walks it: every command, in order, with short settings.

``make readme`` runs the walk (marker ``readme``; several minutes; MNIST comes from the network on
first use, as in ``make demo``). It runs before each release, in a fresh folder, and prints what it
skips and why (commands that need several machines or a database server). The quick check beside it,
run by ``make test``, fails when the README holds a command the walk does not know: a command added
to the README cannot escape the walk.

Short settings: MNIST commands train on 3,000 digits for one epoch; photo folders are 20 photos per
class (the weather photos where they are, else generated ones) at 32 pixels. Everything else is the
README's text, placeholders (``digit.png``, ``photos/``, ``10.0.0.1``) made real on loopback.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from helpers import MNIST_SUBSET, WEATHER

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MNIST_SHORT = "--epochs 1 --train-limit 3000 --test-limit 1000"
PHOTO_SHORT = "--epochs 1 --image-size 32"


def readme_commands(text: str) -> list[str]:
    """Every shell command in the README's code blocks (continuations joined, comments dropped), in order;
    a Python block counts as one command, ``python:`` followed by its first line."""
    commands = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang not in ("", "python", "sh", "bash"):  # a `text` block (the layout tree) is not commands
            continue
        if lang == "python":
            commands.append("python: " + body.strip().splitlines()[0])
            continue
        pending = ""
        for line in body.splitlines():
            code = "" if line.lstrip().startswith("#") else re.sub(r"\s+#\s.*$", "", line).rstrip()
            if code.endswith("\\"):
                pending += code[:-1] + " "
                continue
            if code.startswith("for ") or (pending.startswith("for ") and not code.startswith("done")):
                pending += code + " "  # a shell loop is one command, up to its `done`
                continue
            command = " ".join((pending + code).split())
            pending = ""
            if command:
                commands.append(command)
    return commands


def python_block(text: str, first: str) -> str:
    """The README's Python block whose first line starts with ``first``."""
    return next(body for body in re.findall(r"```python\n(.*?)```", text, re.S) if body.startswith(first))


@dataclass
class Walk:
    """The walk's state: its folder, environment, background servers and what it skipped."""

    home: Path
    env: dict[str, str]
    port: int = 0
    background: dict[str, subprocess.Popen] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    log: list[tuple[str, float]] = field(default_factory=list)

    def sh(self, command: str, *, ok: bool = True, env: dict[str, str] | None = None) -> str:
        """Run a shell command in the walk's folder; return stdout + stderr (fail unless exit 0, if ``ok``)."""
        command = command.replace("localhost:8000", f"localhost:{self.port}").replace("--port 8000",
                                                                                      f"--port {self.port}")
        print(f"$ {command}", flush=True)
        start = time.perf_counter()
        out = subprocess.run(command, shell=True, cwd=self.home, env={**self.env, **(env or {})},
                             capture_output=True, text=True, timeout=900)
        self.log.append((command, time.perf_counter() - start))
        text = out.stdout + out.stderr
        if ok:
            assert out.returncode == 0, f"{command} exited {out.returncode}:\n{_ends(text)}"
        for line in text.splitlines():  # a newcomer reads every line: no tracebacks, no C++ log lines
            assert not line.startswith(("Traceback", "WARNING: All log messages", "I0000", "W0000")), text[-4000:]
        return text

    def start(self, name: str, command: str) -> None:
        """Start a server in the background; return once it answers /readyz."""
        command = command.replace("--port 8000", f"--port {self.port}")
        if "--port" not in command:
            command += f" --port {self.port}"
        print(f"$ {command} &", flush=True)
        self.background[name] = subprocess.Popen(command, shell=True, cwd=self.home, env=self.env, text=True,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            assert self.background[name].poll() is None, self.background[name].stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{command} was not ready after 120 s"
            time.sleep(0.3)

    def stop(self, name: str) -> str:
        process = self.background.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
        assert "Traceback" not in out, out[-3000:]
        return out

    def skip(self, command: str, reason: str) -> None:
        print(f"SKIPPED {command}\n        ({reason})", flush=True)
        self.skipped.append((command, reason))


def _ends(text: str, size: int = 2000) -> str:
    """The start and the end of a long output: where an error is named, and where it was raised."""
    return text if len(text) <= 2 * size else f"{text[:size]}\n[...]\n{text[-size:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _extra(command: str) -> Callable[[Walk], None]:
    """`pip install 'cnnkit[X]'`: the extra must exist (it is installed by `make install`)."""
    def check(walk: Walk) -> None:
        name = re.search(r"cnnkit\[(\w+)\]", command)[1]
        assert name in importlib.metadata.metadata("cnnkit").get_all("Provides-Extra"), name
        walk.skip(command, f"the [{name}] extra exists; `make install` installed it (this checkout is not on an index)")
    return check


def _killed_then_resumed(command: str) -> Callable[[Walk], None]:
    """Make the killed run the README's `--resume` line speaks of, then run that line as written."""
    def walk_it(walk: Walk) -> None:
        run = walk.home / "runs" / "b"
        start = "cnnkit train mnist --recipe article-001 --out runs/b --epochs 3 --train-limit 6000 --test-limit 500"
        print(f"$ {start} &   (killed after its first epoch)", flush=True)
        process = subprocess.Popen(start, shell=True, cwd=walk.home, env=walk.env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not (run / "history.json").is_file():
            assert process.poll() is None and time.monotonic() < deadline, "the run to kill did not start"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert "is unfinished" in walk.sh("cnnkit predict runs/b digit.png", ok=False)
        assert "Resuming" in walk.sh(command)
    return walk_it


def _serve_briefly(command: str) -> Callable[[Walk], None]:
    def walk_it(walk: Walk) -> None:
        walk.start("first", command)
        with urllib.request.urlopen(f"http://127.0.0.1:{walk.port}/v1/models", timeout=10) as answer:
            assert b"class_names" in answer.read()
        walk.stop("first")
    return walk_it


def _python(walk: Walk) -> None:
    code = python_block(README.read_text(), "import cnnkit").replace("epochs=2)", "epochs=1, train_limit=3000, "
                                                                                 "test_limit=1000)")
    (walk.home / "readme_api.py").write_text(code + "\nprint(predictor.predict(data.x_test[:5])[0])\n")
    assert "Prediction(label=" in walk.sh(f"{sys.executable} readme_api.py")


def _triton(walk: Walk) -> None:
    """The README's tritonclient example against the server `cnnkit serve runs/a --port 8000` started; then stop it."""
    code = python_block(README.read_text(), "import numpy as np, tritonclient")
    (walk.home / "readme_triton.py").write_text(code.replace('"localhost:8000"', f'"localhost:{walk.port}"'))
    out = walk.sh(f"{sys.executable} readme_triton.py")
    assert out.startswith("True [{'name': 'pixels'") and re.search(r"\[b'\w+'\]", out), out
    walk.stop("deploy")


def _two_processes(walk: Walk, commands: list[str]) -> None:
    """The README's two-machine data-parallel commands, both on this machine over loopback."""
    port = _free_port()
    started = []
    for command in commands:
        command = command.replace("10.0.0.1:8476", f"127.0.0.1:{port}").replace("/shared/runs/dp", "runs/dp2")
        command = f"{command} {MNIST_SHORT} --batch-size 64"
        print(f"$ KERAS_BACKEND=jax {command} &", flush=True)
        started.append(subprocess.Popen(command, shell=True, cwd=walk.home, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env={**walk.env, "KERAS_BACKEND": "jax"}))
    for process in started:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0 and "Test accuracy" in out, _ends(out)
    assert (walk.home / "runs" / "dp2" / "model.keras").is_file()


def steps(text: str) -> dict[str, Callable[[Walk], None]]:
    """README command -> what the walk does for it. Every README command must be a key."""
    multi = [c for c in readme_commands(text) if "--coordinator" in c]
    table: dict[str, Callable[[Walk], None]] = {
        "make demo": lambda w: w.sh(f"make -C {ROOT} demo RUN={w.home}/runs/demo"),
        "make test": lambda w: w.skip("make test", "the suite this walk belongs to; CI runs it on every push"),
        "cnnkit show mnist": lambda w: w.sh("cnnkit show mnist"),
        "cnnkit summary --list": lambda w: w.sh("cnnkit summary --list"),
        "cnnkit summary article-004": lambda w: w.sh("cnnkit summary article-004"),
        "cnnkit lr-find mnist --recipe fast":
            lambda w: w.sh("cnnkit lr-find mnist --recipe fast --train-limit 3000 --steps 30"),
        "cnnkit train mnist --recipe fast --out runs/a":
            lambda w: w.sh(f"cnnkit train mnist --recipe fast --out runs/a {MNIST_SHORT}"),
        "cnnkit train mnist --out runs/b --resume": _killed_then_resumed("cnnkit train mnist --out runs/b --resume"),
        "cnnkit evaluate runs/a": lambda w: w.sh("cnnkit evaluate runs/a"),
        "cnnkit predict runs/a digit.png other.png": lambda w: w.sh("cnnkit predict runs/a digit.png other.png"),
        "cnnkit export runs/a --format json-h5": lambda w: w.sh("cnnkit export runs/a --format json-h5"),
        "cnnkit serve runs/a": _serve_briefly("cnnkit serve runs/a"),
        "cnnkit reproduce article-000": lambda w: w.sh(f"cnnkit reproduce article-000 {MNIST_SHORT}"),
        "cnnkit tune mnist --study s --storage sqlite:///runs/tune.db":
            lambda w: w.sh("cnnkit tune mnist --study s --storage sqlite:///runs/tune.db --trials 2 "
                           "--epochs 1 --train-limit 2000 --test-limit 500"),
        "cnnkit verify photos/": lambda w: w.sh("cnnkit verify photos/"),
        "cnnkit explain article-002": lambda w: _explain_matches_readme(w, text),
        "cnnkit report runs/a": lambda w: w.sh("cnnkit report runs/a"),
        "cnnkit show photos/": lambda w: w.sh("cnnkit show photos/"),
        "cnnkit train photos/ --out runs/photos":
            lambda w: w.sh(f"cnnkit train photos/ --out runs/photos {PHOTO_SHORT}"),
        "cnnkit train photos/ --budget 3 --out runs/p3":
            lambda w: w.sh("cnnkit train photos/ --budget 0.3 --image-size 32 --out runs/p3"),
        "cnnkit train weather/ --recipe article-003 --train-per-class 150":
            lambda w: w.sh("cnnkit train weather/ --recipe article-003 --train-per-class 12 "
                           "--epochs 1 --image-size 48"),
        "cnnkit audit photos/": lambda w: w.sh("cnnkit audit photos/ --folds 2 --epochs 1"),
        "cnnkit relabel audits/photos/suspects.csv": lambda w: w.sh("cnnkit relabel audits/photos/suspects.csv"),
        "cnnkit train photos/ --exclude audits/photos/suspects.csv":
            lambda w: w.sh(f"cnnkit train photos/ --exclude audits/photos/suspects.csv --out runs/ex {PHOTO_SHORT}"),
        "cnnkit explain conv": lambda w: w.sh("cnnkit explain conv"),
        "cnnkit explain runs/a": lambda w: w.sh("cnnkit explain runs/a"),
        "cnnkit inspect runs/a digit.png --target 7": lambda w: w.sh("cnnkit inspect runs/a digit.png --target 7"),
        "cnnkit serve runs/a --port 8000": lambda w: w.start("deploy", "cnnkit serve runs/a --port 8000"),
        "curl -F file=@digit.png localhost:8000/v1/predict":
            lambda w: _answer(w.sh("curl -sS -F file=@digit.png localhost:8000/v1/predict")),
        "curl --data-binary @digit.png -H 'Content-Type: image/png' localhost:8000/v1/predict":
            lambda w: _answer(w.sh("curl -sS --data-binary @digit.png -H 'Content-Type: image/png' "
                                   "localhost:8000/v1/predict")),
        "cnnkit predict runs/a photos/ --out predictions.csv":
            lambda w: w.sh("cnnkit predict runs/a photos/ --out predictions.csv"),
        "cnnkit export runs/a --format onnx": lambda w: w.sh("cnnkit export runs/a --format onnx"),
        "python: import cnnkit": _python,
        "python: import numpy as np, tritonclient.http as httpclient    # pip install 'tritonclient[http]'": _triton,
        "pip install 'cnnkit[jax]'": _extra("pip install 'cnnkit[jax]'"),
        "KERAS_BACKEND=jax cnnkit train mnist --distribute data-parallel --out runs/dp":
            lambda w: w.sh(f"KERAS_BACKEND=jax cnnkit train mnist --distribute data-parallel --out runs/dp "
                           f"{MNIST_SHORT}"),
        "export KERAS_BACKEND=jax": lambda w: None,  # the next two commands run with it
        multi[0]: lambda w: _two_processes(w, multi),
        multi[1]: lambda w: None,  # started with the previous one: the two processes run together
        "pip install 'cnnkit[ray]'": _extra("pip install 'cnnkit[ray]'"),
        "cnnkit predict runs/a photos/ --engine ray --out predictions.csv":
            lambda w: w.sh("cnnkit predict runs/a photos/ --engine ray --out predictions-ray.csv"),
        "ray start --head --port=6379": lambda w: w.skip("ray start --head --port=6379", "a Ray cluster of machines"),
        "ray start --address=HEAD:6379": lambda w: w.skip("ray start --address=HEAD:6379", "a Ray cluster of machines"),
        "pip install 'cnnkit[tune]'": _extra("pip install 'cnnkit[tune]'"),
        "cnnkit backbones": lambda w: w.sh("cnnkit backbones"),
        # ImageNet weights cannot be fetched where the walk runs: the same commands with random weights.
        "cnnkit train photos/ --backbone efficientnet_v2_b0 --out runs/tl":
            lambda w: w.sh(f"cnnkit train photos/ --backbone efficientnet_v2_b0 --weights none "
                           f"--out runs/tl {PHOTO_SHORT}"),
        "cnnkit train photos/ --backbone efficientnet_v2_b0 --fine-tune 5 --out runs/tl5":
            lambda w: w.sh(f"cnnkit train photos/ --backbone efficientnet_v2_b0 --weights none --fine-tune 1 "
                           f"--out runs/tl5 {PHOTO_SHORT}"),
        "cnnkit train photos/ --backbone resnet50 "
        "--weights ~/Downloads/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5":
            lambda w: w.skip("cnnkit train photos/ --backbone resnet50 --weights ~/Downloads/…",
                             "a weights file downloaded by hand; --weights PATH is tested in tests/test_backbones.py"),
    }
    for command in readme_commands(text):
        if command in table:
            continue
        if "--ray-address HEAD" in command:
            table[command] = lambda w, c=command: w.skip(c, "a Ray cluster of machines (HEAD is its head node)")
        elif "postgresql://" in command:
            table[command] = lambda w, c=command: w.skip(c, "a PostgreSQL server shared by several machines")
        elif command.startswith("cnnkit tune ") or command.startswith("for i in"):
            table[command] = lambda w, c=command: w.sh(_short_tune(c))
    return table


def _short_tune(command: str) -> str:
    """A README tune command with 2 trials of one short epoch (the loop: 2 workers)."""
    short = "--trials 2 --epochs 1 --train-limit 2000 --test-limit 500"
    command = command.replace("--trials 40 --epochs 3", short).replace("1 2 3 4", "1 2")
    # `wait` alone exits 0 whatever the workers did: wait for each and fail with the first that failed.
    command = command.replace("& done; wait", '& pids="$pids $!"; done; for p in $pids; do wait $p || exit 1; done')
    return command if short in command else f"{command} {short}"


def _answer(text: str) -> None:
    assert '"predictions"' in text and '"label"' in text, text[-2000:]


def _explain_matches_readme(walk: Walk, text: str) -> None:
    """The README quotes `cnnkit explain article-002`: the quotes must be in its real output."""
    out = walk.sh("cnnkit explain article-002")
    quoted = re.search(r"cnnkit explain article-002 .*?\n(?=cnnkit explain conv)", text, re.S)[0]
    for fragment in re.findall(r'"([^"]+)"', quoted):
        assert fragment in out, f"the README quotes {fragment!r}; `cnnkit explain article-002` does not print it"


def test_every_readme_command_is_in_the_walk():
    text = README.read_text()
    table = steps(text)
    missing = [c for c in readme_commands(text) if c not in table]
    assert not missing, f"README commands the walk does not know (add them to tests/test_readme.py): {missing}"


def _photos(folder: Path) -> str:
    """20 photos per class: the weather photos where they are, else generated ones."""
    if WEATHER.is_dir():
        for label in ("cloudy", "rain", "shine", "sunrise"):
            for path in sorted(WEATHER.glob(f"{label}*"))[:20]:
                shutil.copy(path, folder / path.name)
        return f"weather photos from {WEATHER}"
    from photo_factory import write_clean

    write_clean(folder, per_class=20)
    return "generated photos (the weather photos are not here)"


@pytest.mark.readme
@pytest.mark.timeout(1800)  # ~40 commands: 8 min alone on 2 cores, over 10 when the CPU is shared
def test_readme_walk(tmp_path):
    text = README.read_text()
    home = tmp_path / "newcomer"
    (home / "photos").mkdir(parents=True)
    source = _photos(home / "photos")
    (home / "weather").symlink_to(home / "photos")
    from cnnkit.datasets import load
    from cnnkit.images import encode_png

    digits = load(str(MNIST_SUBSET))
    sevens, others = np.flatnonzero(digits.y_test == 7), np.flatnonzero(digits.y_test != 7)
    (home / "digit.png").write_bytes(encode_png(digits.x_test[sevens[0]]))
    (home / "other.png").write_bytes(encode_png(digits.x_test[others[0]]))
    env = {k: v for k, v in os.environ.items() if k not in ("CNNKIT_HOME", "KERAS_BACKEND")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    walk = Walk(home=home, env=env, port=_free_port())
    print(f"\nWalking {README} in {home} with {source}.", flush=True)
    started = time.perf_counter()
    table = steps(text)
    try:
        for command in readme_commands(text):
            table[command](walk)
    finally:
        for name in list(walk.background):
            walk.stop(name)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nWalked {len(walk.log)} commands in {minutes:.1f} min; skipped {len(walk.skipped)}:")
    for command, reason in walk.skipped:
        print(f"  {command}: {reason}")
