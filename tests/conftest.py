"""Shared fixtures: the committed genuine-MNIST subset and one tiny trained run (constants in helpers.py).

Every test runs offline: cnnkit's cache points at a fresh temporary folder, so
nothing a developer cached (or fetched) leaks into the results.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

from helpers import CHROMIUM, CHROMIUM_ARGS, MNIST_SUBSET, WEATHER

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CNNKIT_HOME", str(tmp_path_factory.mktemp("cnnkit_home")))
    monkeypatch.setenv("CNNKIT_OFFLINE", "1")  # recipe auto fetches no weights; the fetch's own tests unset it


@pytest.fixture(scope="session")
def mnist_subset():
    """3,000 train + 600 test genuine MNIST digits (tests/fixtures/README.md)."""
    from cnnkit.datasets import load

    return load(str(MNIST_SUBSET))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The default recipe trained for 3 epochs on the subset: a complete run folder."""
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.run import train

    out = tmp_path_factory.mktemp("runs") / "fast"
    return train(TrainConfig(recipe="fast", data=str(MNIST_SUBSET), epochs=3, seed=0), out, verbose=0)


def unavailable(reason: str) -> None:
    """Skip a browser test, or fail it under `make test` (CNNKIT_REQUIRE_BROWSER=1)."""
    if os.environ.get("CNNKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} `make test` installs what the browser tests need (`make browser`, "
                    "`make install`); run it, or unset CNNKIT_REQUIRE_BROWSER to skip them.", pytrace=False)
    pytest.skip(f"{reason} (set CNNKIT_REQUIRE_BROWSER=1 to make this a failure; `make test` does)")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]').")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium).")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def real_weather() -> Path:
    """The weather photos; a slow test asked for them fails, loudly, when they are missing (never skips)."""
    if not WEATHER.is_dir():
        pytest.fail(f"The weather photos are not at {WEATHER}. Put article 003's folder there (beside the "
                    "repository, in shared/datasets/weather) or set CNNKIT_WEATHER to it.", pytrace=False)
    return WEATHER


def _descendants(pid: int) -> set[int]:
    """Live (non-zombie) processes below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture
def local_ray():
    """A local Ray started the way cnnkit starts it (loopback only); shut down after, nothing left running."""
    if importlib.util.find_spec("ray") is None:  # not `importorskip`: Ray must not be imported before cnnkit sets
        pytest.skip("Ray is not installed (pip install -e '.[test]')")  # its loopback switch
    from cnnkit.batch_ray import ray_session

    before = _descendants(os.getpid())
    try:
        with ray_session(num_cpus=2) as ray:
            assert ray.util.get_node_ip_address() == "127.0.0.1"
            yield ray
    finally:
        sys.modules["ray"].shutdown()
    deadline = time.monotonic() + 20
    while (left := _descendants(os.getpid()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"Ray processes still running after ray.shutdown(): {sorted(left)}"
