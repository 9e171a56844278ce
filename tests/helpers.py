"""What the tests share: their data, small tools, and one check per kind of thing, run over its registry.

Like Keras' ``run_layer_test`` and scikit-learn's ``parametrize_with_checks``, each ``check_*``
function is the whole contract of one kind of thing, and the test modules run it over every
member of the registry (``PRESETS``, ``ENGINES``, the server's routes, the dataset kinds), so
adding a member cannot skip a check:

- :func:`check_preset`: builds with its declared parameter count and raw uint8 input, trains a
  step, survives a ``.keras`` round trip, has an exact float32 twin, and every graph export
  (SavedModel, LiteRT, ONNX) answers as Keras does, twice the same.
- :func:`check_engine`: the same probabilities as the Keras model, with and without TTA.
- :func:`check_route`: every error is JSON ``{code, message}`` (``{error}`` on ``/v2``) with the status it should have.
- :func:`check_dataset`: uint8 NHWC pixels, labels in range, disjoint splits, class names.

Test modules import from here (and from ``photo_factory``), never from one another.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
# Run as `python -c IMPORTS_AFTER ARGS...`: the cnnkit command ARGS, then which frameworks it loaded.
IMPORTS_AFTER = """
import sys
from cnnkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("loaded:", sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules))
"""
MNIST_SUBSET = FIXTURES / "mnist_subset.npz"  # 3,000 + 600 genuine MNIST digits (fixtures/README.md)
# Article 003's weather photos, for the slow real-data tests: beside the repository (../shared), or
# wherever CNNKIT_WEATHER points. Never in the repository itself (79 MB).
WEATHER = Path(os.environ.get("CNNKIT_WEATHER") or Path(__file__).resolve().parents[2] / "shared/datasets/weather")
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright must never download a browser of its own
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# What a finished run folder holds, file by file.
RUN_FILES = ["config.json", "confusion_matrix.csv", "confusion_matrix.png", "curves.png", "gradcam.png", "history.csv",
             "history.json", "metrics.json", "model.keras", "per_class.csv", "predictions.png", "reliability.png",
             "report.html", "samples.png", "top_losses.png"]
CLASSES = ["zero", "one", "two"]  # the tiny predictor's
LIMIT_MB = 0.05  # the test servers' body limit: 52,428 bytes; a 28x28 PNG is ~1 KB, so 413 tests stay small
GRAPH_FORMATS = ("saved_model", "litert", "onnx")
EXPORT_TOLERANCE = 1e-4


# -- the command line ------------------------------------------------------------------------------

def run_cli(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    """``cnnkit ARGV`` in this process (paths allowed): exit code, stdout, stderr."""
    from cnnkit.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    """One ``Error:`` line and at most one ``Hint:``, no traceback, a non-zero exit, and every fragment."""
    assert code != 0
    assert err.startswith("Error: "), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2, err  # "Error: …" and at most one "Hint: …"
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# -- models and predictors ------------------------------------------------------------------------

def tiny_predictor(classes: list[str] | None = None) -> Any:
    """A 3-class, 28x28 grey model with a few hundred weights: fast to build, call and serve."""
    from cnnkit._backend import keras
    from cnnkit.artifact import ModelMetadata
    from cnnkit.predictor import Predictor

    classes = classes or CLASSES
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(classes), activation="softmax")(x))
    return Predictor(model, ModelMetadata(class_names=classes, input_shape=[28, 28, 1], color_mode="grayscale"))


def digits(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random 28x28 grey uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def fake_engine(call: Callable[[np.ndarray], np.ndarray], input_shape: tuple[int, int, int] = (28, 28, 1)) -> Any:
    """An engine that runs ``call`` instead of a model: a slow, failing or counting stand-in for server tests."""
    from cnnkit.engines import Engine

    class _Fake(Engine):
        name = "fake"

        def __init__(self) -> None:
            self.input_shape = input_shape

        def __call__(self, pixels: np.ndarray) -> np.ndarray:
            return call(pixels)

    return _Fake()


# -- servers --------------------------------------------------------------------------------------

def wait_ready(client: Any, timeout: float = 20.0) -> None:
    """Poll a TestClient's /readyz until it answers 200."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.01)


def wait_ready_http(http: Any, timeout: float = 30.0) -> None:
    """Poll a real server's /readyz over loopback (it may not be listening yet)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.02)


@contextlib.contextmanager
def live_server(predictor: Any, **settings: Any) -> Iterator[str]:
    """A real uvicorn server for ``predictor`` on a free loopback port, in a thread; yields its base URL."""
    import httpx

    from cnnkit.server import ServerSettings, create_app
    from cnnkit.server.cli import build_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # loopback only
    config = ServerSettings(port=sock.getsockname()[1], **settings)
    server = build_server(create_app(predictor, config), config, log_level="error")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_ready_http(http)
        yield base
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def png_header_bomb(width: int = 9_000, height: int = 9_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression-bomb probe)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def check_route(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    """An answer with ``status`` and the one error shape: JSON ``{code, message}``, or on the Open
    Inference Protocol's ``/v2`` routes the protocol's ``{error}``; no internals in it. Returns ``{code, message}``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    path = response.request.url.path
    if path == "/v2" or path.startswith("/v2/"):
        assert set(body) == {"error"} and body["error"], body
        body = {"code": status, "message": body["error"]}
    assert set(body) == {"code", "message"} and body["code"] == status and body["message"], body
    assert "Traceback" not in body["message"]
    assert not fragments or any(f in body["message"] for f in fragments), (fragments, body["message"])
    return body


# -- presets and exports --------------------------------------------------------------------------

def small_shape(name: str, limit: int = 64, small: int = 48) -> tuple[int, int, int]:
    """The preset's input shape, with sides above ``limit`` brought down to ``small``: the same layers, less work."""
    from cnnkit.presets import PRESETS

    height, width, channels = PRESETS[name].input_shape
    return (height, width, channels) if max(height, width) <= limit else (small, small, channels)


def train_tiny(name: str, folder: Path) -> tuple[Path, np.ndarray]:
    """The preset trained for two steps on random pixels and saved; and 16 other images to compare on."""
    from cnnkit._backend import keras
    from cnnkit.artifact import ModelMetadata, save_model
    from cnnkit.models import build_model, make_optimizer
    from cnnkit.presets import PRESETS

    preset = PRESETS[name]
    shape = small_shape(name)
    keras.utils.set_random_seed(0)
    model = build_model(preset, input_shape=shape)
    model.compile(optimizer=make_optimizer(preset.optimizer), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *shape), dtype=np.uint8)
    model.fit(x, rng.integers(0, preset.num_classes, 16), batch_size=8, epochs=1, verbose=0)  # two steps
    for layer in model.layers:  # an export that ran batch norm in training mode would otherwise pass
        if isinstance(layer, keras.layers.BatchNormalization):
            assert np.abs(keras.ops.convert_to_numpy(layer.moving_mean)).max() > 0, layer.name
    metadata = ModelMetadata(class_names=[f"class{i}" for i in range(preset.num_classes)], input_shape=list(shape),
                             color_mode=preset.color_mode, recipe=name, tta=dict(preset.tta))
    path = save_model(model, folder / f"{name}.keras", metadata)
    return path, rng.integers(0, 256, (16, *shape), dtype=np.uint8)


def export_runner(path: Path, fmt: str) -> Callable[[np.ndarray], np.ndarray]:
    """Call an exported file with its own runtime: TensorFlow, LiteRT or onnxruntime."""
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # the closure keeps it: its variables live in it
        return lambda x: loaded.serve(x).numpy()
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(str(path))

        def invoke(x: np.ndarray) -> np.ndarray:
            inp = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

        return invoke
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("pixels", "tensor(uint8)")]  # raw pixels in
    return lambda x: session.run(None, {"pixels": x})[0]


def check_export(model_path: Path, x: np.ndarray, out: Path, formats: Iterable[str] = GRAPH_FORMATS) -> None:
    """Every graph export of a saved model agrees with Keras within 1e-4 and answers the same twice."""
    import json
    import warnings

    import cnnkit
    from cnnkit.artifact import read_metadata
    from cnnkit.exporting import export_model

    expected = cnnkit.load(model_path, tta=False).predict_proba(x)
    metadata = read_metadata(model_path)
    for fmt in formats:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            files = export_model(model_path, out / fmt, fmt)
        assert not [w for w in caught if "np.object" in str(w.message)]  # tf2onnx's NumPy 2 noise is silenced
        run = export_runner(files[0], fmt)
        first, second = run(x), run(x)
        difference = {"format": fmt, "from Keras": float(np.abs(first - expected).max()),
                      "between calls": float(np.abs(first - second).max())}
        assert difference["from Keras"] < EXPORT_TOLERANCE and difference["between calls"] == 0, difference
        assert json.loads(files[1].read_text())["input_shape"] == metadata["input_shape"]
        if fmt == "onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(files[0])).metadata_props}
            assert json.loads(props["cnnkit"])["class_names"] == metadata["class_names"]


def check_preset(name: str, folder: Path, *, deep: bool = True) -> None:
    """The whole contract of a preset; see the module docstring.

    ``deep=False`` stops after the build (declared parameters, raw uint8 in, preprocessing inside,
    probabilities out): what every backend must do, cheaply. The training step, round trip, twins and
    exports are the deep part.
    """
    from cnnkit import _backend
    from cnnkit._backend import keras
    from cnnkit.artifact import load_model
    from cnnkit.models import build_model, inference_model, to_float32
    from cnnkit.presets import PRESETS

    preset = PRESETS[name]
    assert preset.description and preset.params > 0
    assert "learning_rate" in preset.optimizer and preset.batch_size and preset.epochs  # every value pinned
    model = build_model(preset)
    assert model.count_params() == preset.params
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape[1:]) == preset.input_shape
    assert model.outputs[0].shape[-1] == preset.num_classes
    names = [layer.name for layer in model.layers]
    pixels = np.random.default_rng(0).integers(0, 256, (2, *preset.input_shape), dtype=np.uint8)
    # Preprocessing lives in the model; only training-only layers may come before the scaling (a backbone's:
    # an exact cast, then the family's own, checked against keras.applications in tests/test_backbones.py).
    first = "to_float" if preset.backbone else "rescale"
    assert first in names
    assert all(type(layer).__name__.startswith("Random") for layer in model.layers[:names.index(first)])
    if not preset.backbone:
        scaled = keras.ops.convert_to_numpy(model.get_layer("rescale")(pixels))
        assert scaled.min() >= 0.0 and scaled.max() <= 1.0  # raw 0..255 in; the model scales them itself
    probs = keras.ops.convert_to_numpy(model(pixels, training=False))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if not deep:
        return
    path, x = train_tiny(name, folder)  # one training step's worth (two batches), saved as .keras
    loaded, _ = load_model(path)
    expected = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)
    twin = inference_model(loaded)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(twin(x)), expected, rtol=0, atol=1e-6)
    mixed = build_model(preset, input_shape=x.shape[1:], precision="mixed_bfloat16")
    mixed.set_weights(loaded.get_weights())
    exact = to_float32(mixed, preset)  # what a mixed-precision run saves: the same weights, float32 arithmetic
    assert {layer.dtype_policy.name for layer in exact.layers} == {"float32"}
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(exact(x, training=False)), expected)
    if _backend.name() == "tensorflow":  # graph exports run on TensorFlow
        # A backbone's three conversions take minutes: ONNX here (the one users ask for); SavedModel and
        # LiteRT agreed within the same tolerance when run by hand (2026-11-30).
        check_export(path, x, folder / "exports", formats=("onnx",) if preset.backbone else GRAPH_FORMATS)


# -- engines --------------------------------------------------------------------------------------

def check_engine(make: Callable[[Any], Any], model: Any, x: np.ndarray) -> None:
    """An engine made by ``make(model)`` gives Keras' probabilities, one view and with TTA, at any batch size."""
    from cnnkit._backend import keras
    from cnnkit.engines import with_tta
    from cnnkit.tta import num_views, views

    engine = make(model)
    assert engine.input_shape == tuple(model.input_shape[1:])
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    got = engine(x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(engine(x[:1]), expected[:1], rtol=1e-5, atol=1e-6)  # batch sizes share one path
    assert engine(x[:0]).shape[0] == 0
    engine.warmup([1, 2])
    spec = {"shift": 1}
    shifted = keras.ops.convert_to_numpy(model(views(x, spec), training=False))
    averaged = shifted.reshape(num_views(spec), len(x), -1).mean(axis=0)
    np.testing.assert_allclose(with_tta(make(model), spec)(x), averaged, rtol=1e-5, atol=1e-6)


# -- datasets -------------------------------------------------------------------------------------

def check_dataset(dataset: Any) -> None:
    """What every loader must return: uint8 NHWC pixels of one size, labels in range, named classes."""
    from cnnkit.images import COLOR_MODES

    parts = ["train", "test"] + (["val"] if dataset.x_val is not None else [])
    for part in parts:
        x, y = getattr(dataset, f"x_{part}"), getattr(dataset, f"y_{part}")
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == dataset.input_shape, (part, x.shape)
        assert x.shape[-1] == COLOR_MODES[dataset.color_mode]
        assert y.dtype == np.int64 and y.shape == (len(x),) and y.min() >= 0 and y.max() < dataset.num_classes
    assert len(dataset.x_train) and len(dataset.x_test)
    assert len(set(dataset.class_names)) == dataset.num_classes >= 2 and all(dataset.class_names)
    # Not one training image is also a test image (the leak the articles have): pixels compared whole.
    train = {bytes(np.asarray(row)) for row in np.asarray(dataset.x_train).reshape(len(dataset.x_train), -1)}
    assert not any(bytes(row) in train for row in np.asarray(dataset.x_test).reshape(len(dataset.x_test), -1))
