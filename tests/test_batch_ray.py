"""`cnnkit predict --engine ray`: the single-process rows, computed on a local loopback Ray instance."""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

from cnnkit.cli import main
from cnnkit.images import encode_png

N_IMAGES = 2000
BAD_FILES = {"empty.png": b"", "text.png": b"just some text, named .png"}


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


@pytest.fixture
def image_folder(tmp_path, mnist_subset):
    """2,000 genuine digits as PNG files, plus an empty, a truncated and a text file named .png."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, pixels in enumerate(mnist_subset.x_train[:N_IMAGES]):
        (folder / f"{i:04d}.png").write_bytes(encode_png(pixels))
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "truncated.png").write_bytes((folder / "0000.png").read_bytes()[:60])
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_ray_engine_gives_the_single_process_rows(local_ray, trained_run, image_folder, mnist_subset, tmp_path,
                                                  capsys):
    run, missing = str(trained_run.run_dir), str(tmp_path / "missing.png")
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert main(["predict", run, str(image_folder), missing, "--out", str(local)]) == 1  # bad files: exit 1
    assert main(["predict", run, str(image_folder), missing, "--out", str(on_ray), "--engine", "ray"]) == 1
    assert f"Wrote {N_IMAGES + 4} rows (4 errors)" in capsys.readouterr().out

    expected, got = _rows(local), _rows(on_ray)
    assert len(got) == N_IMAGES + 4
    assert got == expected  # path, label, probability, top-k and error, in input order, to the last digit
    errors = {Path(r["path"]).name: r["error"] for r in got if r["error"]}
    assert set(errors) == {"empty.png", "text.png", "truncated.png", "missing.png"}
    assert "empty" in errors["empty.png"] and "not found" in errors["missing.png"]
    assert "Cannot decode image" in errors["text.png"] and "Cannot decode image" in errors["truncated.png"]
    truth = [mnist_subset.class_names[y] for y in mnist_subset.y_train[:N_IMAGES]]
    assert sum(r["label"] == t for r, t in zip(got, truth)) / N_IMAGES > 0.9  # a real model, real rows


def test_engine_ray_without_ray_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as when it is not installed
    assert main(["predict", "runs/a", "digit.png", "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "Error: --engine ray needs Ray Data, which is not installed" in err
    assert "Hint: Install it with: pip install 'cnnkit[ray]'" in err


def test_ray_options_need_the_ray_engine(capsys):
    assert main(["predict", "runs/a", "digit.png", "--ray-address", "head:6379"]) == 2
    assert "Add --engine ray." in capsys.readouterr().err


def test_local_ray_refuses_to_leave_loopback(monkeypatch):
    """Ray imported before the loopback switch was set: starting a local instance is refused, not exposed."""
    from cnnkit.batch_ray import LOOPBACK_ENV, ray_session
    from cnnkit.errors import ConfigError

    monkeypatch.setenv(LOOPBACK_ENV, "0")  # as cnnkit sets it, so that importing Ray here harms no later test
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", True)
    with pytest.raises(ConfigError, match="Expected a local Ray instance on loopback only"):
        with ray_session(num_cpus=1):
            pass
    assert not ray.is_initialized()
