"""Shared fixtures: the committed genuine-MNIST subset and one tiny trained run.

Every test runs offline: cnnkit's cache points at a fresh temporary folder, so
nothing a developer cached (or fetched) leaks into the results.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright must never download a browser of its own
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MNIST_SUBSET = FIXTURES / "mnist_subset.npz"
# Article 003's weather photos, for the slow real-data tests: beside the repository (../shared), or
# wherever CNNKIT_WEATHER points. Never in the repository itself (79 MB).
WEATHER = Path(os.environ.get("CNNKIT_WEATHER") or Path(__file__).resolve().parents[2] / "shared/datasets/weather")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CNNKIT_HOME", str(tmp_path_factory.mktemp("cnnkit_home")))


@pytest.fixture(scope="session")
def mnist_subset():
    """3,000 train + 600 test genuine MNIST digits (tests/fixtures/README.md)."""
    from cnnkit.datasets import load

    return load(str(MNIST_SUBSET))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The default recipe trained for 3 epochs on the subset: a complete run folder."""
    from cnnkit.run import train
    from cnnkit.config import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "fast"
    return train(TrainConfig(preset="fast", data=str(MNIST_SUBSET), epochs=3, seed=0), out, verbose=0)


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
def weather() -> Path:
    """The weather photos; a slow test asked for them fails, loudly, when they are missing (never skips)."""
    if not WEATHER.is_dir():
        pytest.fail(f"The weather photos are not at {WEATHER}. Put article 003's folder there (beside the "
                    "repository, in shared/datasets/weather) or set CNNKIT_WEATHER to it.", pytrace=False)
    return WEATHER
