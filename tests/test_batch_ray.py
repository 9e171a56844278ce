"""`cnnkit predict --engine ray`: the single-process rows, computed on a local loopback Ray instance."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.images import encode_png

N_IMAGES = 2000
BAD_FILES = {"empty.png": b"", "text.png": b"just some text, named .png"}


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


def _assert_same_rows(got: list[dict[str, str]], expected: list[dict[str, str]]) -> None:
    """The same rows in the same order: paths, labels, top-k classes and errors exactly; probabilities within
    1e-5 (a batch of 3 and a batch of 256 may round the last printed digit differently on some CPUs' kernels)."""
    def split(row: dict[str, str]) -> tuple[dict[str, str], list[float]]:
        pairs = [item.rsplit(":", 1) for item in row["top_k"].split(";")] if row["top_k"] else []
        exact = {**row, "probability": "", "top_k": ";".join(name for name, _ in pairs)}
        return exact, [float(row["probability"] or "nan"), *(float(p) for _, p in pairs)]

    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        (a, pa), (b, pb) = split(mine), split(theirs)
        assert a == b
        np.testing.assert_allclose(pa, pb, atol=1e-5)


def test_ray_engine_gives_the_single_process_rows(local_ray, trained_run, image_folder, mnist_subset, tmp_path,
                                                  capsys):
    run, missing = str(trained_run.run_dir), str(tmp_path / "missing.png")
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert main(["predict", run, str(image_folder), missing, "--out", str(local)]) == 1  # bad files: exit 1
    assert main(["predict", run, str(image_folder), missing, "--out", str(on_ray), "--engine", "ray"]) == 1
    assert f"Wrote {N_IMAGES + 4} rows (4 errors)" in capsys.readouterr().out

    expected, got = _rows(local), _rows(on_ray)
    assert len(got) == N_IMAGES + 4
    _assert_same_rows(got, expected)  # path, label, probability, top-k and error, in input order
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
    assert "Error: Batch prediction on Ray needs the optional package 'ray', which is not installed" in err
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


# Class names of clearly different lengths, each with a colour a model learns in one epoch.
WEATHER = {"a": (200, 30, 30), "cloudy": (128, 128, 128), "thunderstorm_with_hail": (30, 60, 200)}


def _write_photos(folder: Path, per_class: int, rng: np.random.Generator) -> list[Path]:
    """``per_class`` noisy 40x30 PNGs of each :data:`WEATHER` colour, listed with the classes interleaved."""
    from PIL import Image

    paths = []
    for i in range(per_class):
        for name, colour in WEATHER.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            pixels = np.clip(np.array(colour) + rng.integers(-20, 21, (30, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path := folder / name / f"{i:03d}.png")
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def weather_run(tmp_path_factory):
    """A photo model trained 1 epoch at 32 px on class sub-folders named as in :data:`WEATHER`, and 402 unseen
    images of those classes, interleaved (a, cloudy, thunderstorm_with_hail, a, ...)."""
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.run import train

    root, rng = tmp_path_factory.mktemp("weather"), np.random.default_rng(0)
    _write_photos(root / "train", 24, rng)
    config = TrainConfig(recipe="photo", data=str(root / "train"), epochs=1, image_size=32, seed=0)
    run = train(config, root / "run", verbose=0).run_dir
    return run, _write_photos(root / "unseen", 134, rng)


def test_ray_rows_do_not_depend_on_the_label_lengths_in_each_batch(local_ray, weather_run, tmp_path):
    """Regression: each batch's labels went out as fixed-width strings as wide as that batch's longest label, and
    Arrow cannot concatenate two batches of different widths ("Can't unify tensor types ... fixed_size_binary")."""
    from cnnkit.batch import predict_paths
    from cnnkit.batch_ray import predict_paths_ray
    from cnnkit.loading import load

    run, photos = weather_run
    bad = {"empty.png": b"", "text.png": b"just some text, named .png"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    # Errors of different lengths in a few batches, none in the others.
    inputs = [*photos[:7], tmp_path / "empty.png", *photos[7:100], tmp_path / "missing.png", *photos[100:300],
              tmp_path / "text.png", *photos[300:]]
    expected = [f.row() for f in predict_paths(load(run), inputs, top_k=1, progress=False).files]
    truth = [path.parent.name for path in photos]
    assert [r["label"] for r in expected if not r["error"]] == truth  # top-1 widths 1, 6, 22 by turns
    # Ray cuts the 405 rows into 200 blocks of 2 (or 3) rows; an actor task takes whole blocks until it has at
    # least batch_size=3 rows, so most tasks predict a batch of 3 and a batch of 1 or 2, whose longest labels
    # differ, and joins them into one output block.
    got = predict_paths_ray(run, inputs, top_k=1, batch_size=3, progress=False)
    _assert_same_rows([f.row() for f in got.files], expected)  # in input order
    assert got.failed == 3


def test_a_failing_ray_worker_is_one_error_line(local_ray, weather_run, tmp_path, monkeypatch, capsys):
    """The driver can read the model, the actors cannot (the file changed underneath): `Error:` + `Hint:`,
    exit 1, no traceback and no CSV."""
    import cnnkit.loading

    run = tmp_path / "run"
    shutil.copytree(weather_run[0], run)
    real_load = cnnkit.loading.load

    def load_then_corrupt(path, *args, **kwargs):  # the driver's check passes; the actors load the corrupt file
        predictor = real_load(path, *args, **kwargs)
        (run / "model.keras").write_bytes(b"not a zip archive")
        return predictor

    monkeypatch.setattr(cnnkit.loading, "load", load_then_corrupt)
    out = tmp_path / "rows.csv"
    code = main(["predict", str(run), *map(str, weather_run[1][:4]), "--out", str(out), "--engine", "ray"])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 1 and not out.exists()
    assert [line.split(":")[0] for line in lines] == ["Error", "Hint"], captured.err
    assert lines[0].startswith("Error: Ray failed while predicting 4 files: ArtifactError: ")
    assert "model.keras is not a readable .keras model file" in lines[0]
    assert lines[1] == ("Hint: Rerun with --debug for the full traceback, and check that the run folder and the "
                        "images are readable on every Ray node.")
    assert "Traceback" not in captured.err + captured.out and captured.out == ""


def test_first_error_line_finds_the_worker_exception(monkeypatch):
    """What a worker raised, as Ray sends it back: the innermost non-Ray exception line, without its module."""
    from cnnkit.batch_ray import LOOPBACK_ENV, first_error_line

    monkeypatch.setenv(LOOPBACK_ENV, "0")  # as cnnkit sets it, so that importing Ray here harms no later test
    exceptions = pytest.importorskip("ray.exceptions")
    arrow = ('Traceback (most recent call last):\n  File "transform_pyarrow.py", line 659, in unify_schemas\n'
             "pyarrow.lib.ArrowTypeError: Can't unify tensor types with divergent scalar types: [...]\n\n"
             "During handling of the above exception, another exception occurred:\n\n"
             "ray.data._internal.tensor_extensions.arrow.ArrowConversionError: Error converting data to Arrow\n")
    task = exceptions.RayTaskError("submit", arrow, RuntimeError("Error converting data to Arrow"))
    assert first_error_line(task) == "ArrowTypeError: Can't unify tensor types with divergent scalar types: [...]"
    init = exceptions.RayTaskError("__init__", 'Traceback ...\n  File "x.py"\ncnnkit.errors.ArtifactError: '
                                   "m.keras is not a readable .keras model file: bad.\n", ValueError("x"))
    died = exceptions.ActorDiedError(init)
    assert first_error_line(died) == "ArtifactError: m.keras is not a readable .keras model file: bad."
    assert first_error_line(exceptions.RayError("\x1b[36mNode died.\x1b[39m\n  details")) == "Node died."


@pytest.mark.heavy
def test_a_ray_run_prints_only_cnnkit_lines(weather_run, tmp_path):
    """The real command on a local Ray: no Ray warnings, no `E core_worker` lines, no worker output."""
    run, photos = weather_run
    folder = tmp_path / "few"
    folder.mkdir()
    for path in photos[:6]:
        shutil.copy(path, folder / f"{path.parent.name}{path.name}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a fresh local Ray, as a user gets
    out = tmp_path / "rows.csv"
    done = subprocess.run([sys.executable, "-m", "cnnkit.cli", "predict", str(run), str(folder), "--out", str(out),
                           "--engine", "ray"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"Wrote 6 rows (0 errors) to {out}"]
    noise = ("WARNING", " E ", "Traceback", "INFO ", "pid=", "(raylet)")  # Ray's loggers, C++ logs, worker output
    assert not [line for line in done.stderr.splitlines() if any(mark in line for mark in noise)], done.stderr
    assert len(_rows(out)) == 6


def _probabilities(rows, class_names):
    """Full probability vectors back from batch rows (top-k = every class)."""
    return np.array([[dict(r.prediction.top_k)[c] for c in class_names] for r in rows])


def test_predictor_batch_ray_and_server_give_the_same_probabilities(tmp_path, local_ray):
    """The predictor, batch prediction in one process and on Ray, and the server give the same numbers, with and
    without TTA (here with the other Ray tests: one file, one test process, one local Ray at a time)."""
    for tta in (True, False):  # one Ray session for both
        _same_probabilities_everywhere(tta, tmp_path / str(tta))


def _same_probabilities_everywhere(tta: bool, tmp_path) -> None:
    import warnings

    import cnnkit
    from cnnkit.artifact import ModelMetadata, save_model
    from cnnkit.batch import predict_paths
    from cnnkit.batch_ray import predict_paths_ray
    from cnnkit.models import build_model
    from cnnkit.server import ServerSettings, create_app

    from helpers import wait_ready

    classes = ["a", "b", "c", "d"]
    tmp_path.mkdir()
    path = save_model(build_model("fast", num_classes=4), tmp_path / "m.keras", ModelMetadata(
        class_names=classes, input_shape=[28, 28, 1], color_mode="grayscale", tta={"shift": 1}))
    pixels = np.random.default_rng(3).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    files = []
    for i, image in enumerate(pixels):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(encode_png(image))
    predictor = cnnkit.load(path, tta=tta)
    assert bool(predictor.tta) is tta
    direct = predictor.predict_proba(pixels)
    local = _probabilities(predict_paths(predictor, files, top_k=4, progress=False).files, classes)
    ray = _probabilities(predict_paths_ray(path, files, top_k=4, progress=False, tta=tta).files, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient prefers httpx2
        from starlette.testclient import TestClient

        with TestClient(create_app(predictor, ServerSettings(model_name="m"))) as client:
            wait_ready(client)
            answer = client.post("/v2/models/m/infer", json={"inputs": [
                {"name": "pixels", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.ravel().tolist()}]})
    served = np.array(answer.json()["outputs"][0]["data"]).reshape(6, 4)
    for got in (local, ray, served):
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6)
    other = cnnkit.load(path, tta=not tta).predict_proba(pixels)
    assert np.abs(other - direct).max() > 1e-4  # TTA really changes the numbers: the check can fail
