"""Pretrained backbones: the registry against Keras' source, preprocessing and feature parity with
keras.applications, and the real fetch path (Keras' get_file) against a loopback HTTP server."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cnnkit._backend import keras
from cnnkit.errors import ConfigError
from cnnkit.models import build_model
from cnnkit.models.backbones import BACKBONES, backbone_names, count_flops, get_backbone
from cnnkit.models.transfer import find_backbone, load_backbone_weights
from cnnkit.models.weights import MIRROR_ENV, OFFLINE_ENV, resolve_weights
from cnnkit.presets import Preset

# Where Keras pins each file: (module of keras.src.applications, its key in WEIGHTS_HASHES, base URL name).
KERAS_SOURCE = {
    "mobilenet_v3_small": ("mobilenet_v3", "small_224_1.0_float", "BASE_WEIGHT_PATH"),
    "mobilenet_v3_large": ("mobilenet_v3", "large_224_1.0_float", "BASE_WEIGHT_PATH"),
    "efficientnet_v2_b0": ("efficientnet_v2", "b0", "BASE_WEIGHTS_PATH"),
    "convnext_tiny": ("convnext", "convnext_tiny", "BASE_WEIGHTS_PATH"),
    "resnet50": ("resnet", "resnet50", "BASE_WEIGHTS_PATH"),
}
SIDE = 64  # the tests' input side: the same layers, less work
RUN_BACKBONE = "mobilenet_v3_small"  # the end-to-end runs: the cheapest to build and trace
FAST = ["mobilenet_v3_small", "efficientnet_v2_b0", "resnet50"]  # one of each preprocessing, light enough


def preset_for(name: str, channels: int = 3) -> Preset:
    return Preset(name="test-transfer", description="a backbone under a head", params=1,
                  input_shape=(SIDE, SIDE, channels), num_classes=3, layers=(("Dropout", {"rate": 0.2}),),
                  preprocessing={}, backbone=name)


def pixels(n: int = 4, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE, channels), dtype=np.uint8)


def keras_family(name: str, weights: str | None = None) -> keras.Model:
    backbone = get_backbone(name)
    return getattr(keras.applications, backbone.family)(include_top=False, weights=weights,
                                                        input_shape=(SIDE, SIDE, 3), pooling="avg", **backbone.options)


def preprocess_input(name: str):
    """The family's own ``keras.applications.<module>.preprocess_input``."""
    module = KERAS_SOURCE[name][0]
    return getattr(keras.applications, "resnet50" if module == "resnet" else module).preprocess_input


def features(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The cnnkit model's pooled backbone features: every layer up to the backbone, at inference."""
    out = keras.ops.convert_to_tensor(x)
    for layer in model.layers:
        out = layer(out, training=False)
        if layer is find_backbone(model):
            return keras.ops.convert_to_numpy(out)
    raise AssertionError("no backbone")


def weights_file(name: str, folder: Path, seed: int = 1) -> Path:
    """A weights file in Keras' published format (HDF5) made from a freshly initialised backbone."""
    keras.utils.set_random_seed(seed)
    path = folder / get_backbone(name).weights_file
    folder.mkdir(parents=True, exist_ok=True)
    keras_family(name).save(path)
    return path


def test_every_weights_file_and_hash_is_the_one_keras_pins():
    import importlib

    assert set(backbone_names()) == set(KERAS_SOURCE)
    for backbone in BACKBONES:
        module, key, base = KERAS_SOURCE[backbone.name]
        source = importlib.import_module(f"keras.src.applications.{module}")
        assert backbone.weights_hash == source.WEIGHTS_HASHES[key][1], backbone.name  # [1]: without the classifier
        assert backbone.weights_origin == getattr(source, base), backbone.name
        assert backbone.weights_file.endswith(".h5") and key.replace("_224_1.0_float", "") in backbone.weights_file


@pytest.mark.parametrize("name", backbone_names())
def test_declared_size_and_cost_are_the_networks(name):
    backbone = get_backbone(name)
    net = getattr(keras.applications, backbone.family)(include_top=False, weights=None, pooling="avg",
                                                       input_shape=(backbone.input_size, backbone.input_size, 3),
                                                       **backbone.options)
    assert net.count_params() == backbone.params
    assert round(count_flops(net) / 1e9, 2) == backbone.gflops
    assert backbone.description and 50 < backbone.top1 < 90


@pytest.mark.parametrize("name", backbone_names())
@pytest.mark.parametrize("channels", [3, 1])
def test_in_model_preprocessing_is_the_familys_preprocess_input(name, channels):
    model = build_model(preset_for(name, channels))
    x = pixels(channels=channels)
    out = keras.ops.convert_to_tensor(x)
    for layer in model.layers[:model.layers.index(find_backbone(model))]:
        out = layer(out, training=False)
    rgb = np.repeat(x, 3, axis=-1) if channels == 1 else x
    expected = keras.ops.convert_to_numpy(preprocess_input(name)(rgb.astype(np.float32)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FAST)
def test_features_from_one_file_equal_keras_applications(name, tmp_path):
    path = weights_file(name, tmp_path)
    model = build_model(preset_for(name))
    load_backbone_weights(model, get_backbone(name), path)
    x = pixels()
    reference = keras_family(name, weights=str(path))
    expected = keras.ops.convert_to_numpy(reference(preprocess_input(name)(x.astype(np.float32)), training=False))
    np.testing.assert_allclose(features(model, x), expected, rtol=0, atol=1e-5)


def test_a_file_of_another_network_is_refused(tmp_path):
    path = weights_file("mobilenet_v3_small", tmp_path)
    model = build_model(preset_for("efficientnet_v2_b0"))
    with pytest.raises(ConfigError, match=r"does not fit efficientnet_v2_b0 .*Received: weights=") as info:
        load_backbone_weights(model, get_backbone("efficientnet_v2_b0"), path)
    assert "efficientnetv2-b0_notop.h5" in info.value.hint


def test_unknown_backbone_and_too_small_input_are_clear_errors():
    with pytest.raises(ConfigError, match=r"Unknown backbone\. Expected one of \['mobilenet_v3_small'.*"
                                          r"Received: backbone='resnet18'"):
        get_backbone("resnet18")
    small = dataclasses.replace(preset_for("mobilenet_v3_small"), input_shape=(28, 28, 1))
    with pytest.raises(ConfigError, match=r"smaller than mobilenet_v3_small takes: at least 32x32\. "
                                          r"Received: input_shape=\(28, 28, 1\)") as info:
        build_model(small)
    assert info.value.params == ("image_size",)


# -- the fetch: Keras' get_file against a real HTTP server on loopback ------------------------------

class CountingServer(http.server.ThreadingHTTPServer):
    """Counts the connections it accepts and the paths asked for with GET."""

    def __init__(self, *args):
        super().__init__(*args)
        self.connections = 0
        self.gets: list[str] = []

    def verify_request(self, request, client_address):
        self.connections += 1
        return True


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.gets.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on a free loopback port serving ``tmp_path / "served"``; stopped at the end. Downloads
    are allowed (conftest forbids them elsewhere)."""
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(CountingHandler, directory=str(folder))
    httpd = CountingServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/", httpd
    httpd.shutdown()
    httpd.server_close()


def test_imagenet_goes_through_kerass_fetch_with_the_hash_checked(server, tmp_path, monkeypatch):
    folder, url, httpd = server
    served = weights_file("mobilenet_v3_small", folder)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(MIRROR_ENV, url)
    entry = dataclasses.replace(get_backbone("mobilenet_v3_small"),
                                weights_hash=hashlib.md5(served.read_bytes()).hexdigest())
    path = resolve_weights(entry, "imagenet")
    assert path == tmp_path / "keras" / "models" / entry.weights_file and path.read_bytes() == served.read_bytes()
    model = build_model(preset_for("mobilenet_v3_small"))
    load_backbone_weights(model, entry, path)
    x = pixels()
    expected = keras.ops.convert_to_numpy(keras_family("mobilenet_v3_small", str(served))(x.astype(np.float32)))
    np.testing.assert_allclose(features(model, x), expected, rtol=0, atol=1e-5)

    # The network gone: the cached file (its hash checked again) is used.
    httpd.shutdown()
    httpd.server_close()
    assert resolve_weights(entry, "imagenet") == path


def test_a_wrong_hash_is_refused_and_nothing_unverified_stays(server, tmp_path, monkeypatch):
    folder, url, _ = server
    weights_file("mobilenet_v3_small", folder)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(MIRROR_ENV, url)
    entry = get_backbone("mobilenet_v3_small")  # Keras' pinned hash: the test's file is not ImageNet's
    with pytest.raises(ConfigError) as info:
        resolve_weights(entry, "imagenet")
    message = str(info.value)
    assert "hash is not the one Keras pins" in message and url + entry.weights_file in message
    assert entry.weights_file in message and entry.weights_hash in message and "Received: weights='imagenet'" in message
    assert str(tmp_path / "keras" / "models") in message and "pass weights PATH" in info.value.hint  # CLI: --weights
    assert not (tmp_path / "keras" / "models" / entry.weights_file).exists()


def test_a_stopped_server_is_a_clear_error_within_seconds(server, tmp_path, monkeypatch):
    folder, url, httpd = server
    weights_file("mobilenet_v3_small", folder)
    httpd.shutdown()
    httpd.server_close()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(MIRROR_ENV, url)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"Could not get the ImageNet weights of mobilenet_v3_small: the download "
                                          r"failed .*Received: weights='imagenet'"):
        resolve_weights(get_backbone("mobilenet_v3_small"), "imagenet")
    assert time.monotonic() - start < 10


def test_a_server_that_never_answers_is_given_up_on(tmp_path, monkeypatch):
    from cnnkit.models import weights

    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        monkeypatch.setattr(weights, "CONNECT_TIMEOUT", 1.0)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}/")
        start = time.monotonic()
        with pytest.raises(ConfigError, match="the download failed .*timed out"):
            resolve_weights(get_backbone("mobilenet_v3_small"), "imagenet")
        assert time.monotonic() - start < 10
    finally:
        silent.close()


def test_weights_none_and_a_missing_path():
    entry = get_backbone("resnet50")
    assert resolve_weights(entry, "none") is None
    with pytest.raises(ConfigError, match=r"weights file does not exist.*Received: weights='/nowhere/r50.h5'"):
        resolve_weights(entry, "/nowhere/r50.h5")


# -- cnnkit train --backbone: the two stages end to end, on a small folder ---------------------------

@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    """Three classes of 40x40 photos a backbone with random weights can still tell apart (their colour)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for label, colour in (("red", (200, 40, 40)), ("green", (40, 200, 40)), ("blue", (40, 40, 200))):
        (root / label).mkdir()
        for i in range(14):
            pixels = np.clip(rng.normal(colour, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


class Killed(Exception):
    """Stands for the kill -9 that ends a run right after a checkpoint."""


@pytest.fixture(scope="module")
def backbone_runs(shapes_folder, tmp_path_factory, monkeypatch_module):
    """A backbone (random weights) trained twice on the folder with one cnnkit home: both results.

    The second run is killed after its first fine-tuning epoch's checkpoint, then resumed; also
    returned: its history as the kill left it, and what the resumed launch printed.
    """
    from cnnkit.artifact import unfinished_run
    from cnnkit.training import transfer
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.run import train

    root = tmp_path_factory.mktemp("backbone_runs")
    monkeypatch_module.setenv("CNNKIT_HOME", str(root / "home"))
    config = TrainConfig(data=str(shapes_folder), backbone=RUN_BACKBONE, weights="none", image_size=32,
                         fine_tune=2, epochs=3, near_duplicates="off")
    first = train(config, root / "first", verbose=0)

    class KilledAfterCheckpoint(transfer.RunRecorder):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch + 1 == config.epochs + 1:
                raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer, "RunRecorder", KilledAfterCheckpoint)
        with pytest.raises(Killed):
            train(config, root / "second", verbose=0)
    killed = json.loads((root / "second" / "history.json").read_text())
    killed["status"] = unfinished_run(root / "second")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):  # verbose: its lines say where it resumed
        second = train(config, root / "second", resume=True, verbose=2)
    return first, second, killed, output.getvalue()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_train_with_a_backbone_caches_features_and_saves_one_model(backbone_runs):
    from cnnkit.artifact import load_model

    first, second, _, _ = backbone_runs
    stages = first.metrics["transfer"]
    assert stages["backbone"] == RUN_BACKBONE and stages["features_cached"] == 0 and stages["features_computed"]
    assert first.metrics["epochs"] == 3 + 2  # the head's epochs, then two of fine-tuning
    model, meta = load_model(first.run_dir / "model.keras")  # safe mode: Keras' own layers only
    assert model.inputs[0].dtype == "uint8" and meta.class_names == ["blue", "green", "red"]
    assert first.metrics["test_accuracy"] > 0.5  # colour is easy even for random features, once standardised
    again = second.metrics["transfer"]  # recorded by the launch that ran stage 1, kept through the resume
    assert again["features_computed"] == 0 and again["features_cached"] == stages["features_computed"]


def test_a_run_killed_while_fine_tuning_resumes_there(backbone_runs):
    _, second, killed, printed = backbone_runs
    assert len(killed["loss"]) == 3 + 1 and killed["status"] == "4 of 5 epochs completed"
    assert "Resuming" in printed and "after epoch 4/5" in printed and "Features:" not in printed  # no stage 1 again
    history = json.loads((second.run_dir / "history.json").read_text())
    assert len(history["loss"]) == 5 and history["loss"][:4] == killed["loss"][:4]
    # The schedule went on where it stopped: stage 2's rate falls to 0 at its last epoch, not restarted.
    assert history["learning_rate"][3] > history["learning_rate"][4] == pytest.approx(0.0, abs=1e-9)
    assert (second.run_dir / "model.keras").is_file() and not (second.run_dir / "checkpoints").exists()


def test_a_backbone_model_is_explained_exported_and_served(backbone_runs, shapes_folder, tmp_path):
    from cnnkit.artifact import load_model
    from cnnkit.explain.gradcam import grad_cam, spatial_layers
    from cnnkit.explain.inspect import inspect

    from helpers import check_export

    run, photo = backbone_runs[0].run_dir, shapes_folder / "red" / "0.png"
    written = inspect(run, [photo], tmp_path / "inspect")
    assert (tmp_path / "inspect" / "gradcam.png") in written
    model, _ = load_model(run)
    last_map = [layer for layer in find_backbone(model).layers if len(layer.output.shape) == 4][-1].name
    assert spatial_layers(model)[-1] == last_map  # Grad-CAM at the backbone's last feature map
    assert grad_cam(model, cnnkit_load(run).load_files([photo])).shape == (1, 32, 32)
    check_export(run / "model.keras", cnnkit_load(run).load_files([photo]), tmp_path / "exports", formats=("onnx",))
    answer = serve_once(run, photo)
    expected = cnnkit_load(run).predict_files([photo])[0]
    assert answer["predictions"][0]["label"] == expected.label
    assert answer["predictions"][0]["probability"] == pytest.approx(expected.probability, abs=1e-5)


def cnnkit_load(run: Path):
    import cnnkit

    return cnnkit.load(run)


def serve_once(run: Path, photo: Path) -> dict:
    """POST ``photo`` to ``cnnkit serve``'s app for ``run`` on a real loopback port; the JSON answer."""
    import httpx

    from cnnkit.predictor import Predictor
    from cnnkit.server import ServerSettings, create_app
    from cnnkit.server.cli import build_server

    from helpers import wait_ready_http

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = ServerSettings(port=port, model_name="tl")
    server = build_server(create_app(Predictor.from_artifact(run), settings), settings, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_ready_http(http)
            response = http.post("/v1/predict", files={"file": (photo.name, photo.read_bytes(), "image/png")})
            assert response.status_code == 200, response.text
            return response.json()
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.mark.parametrize("extra,fragments", [
    (["--fine-tune", "2"], ["Expected a backbone with fine_tune", "Hint: Name one with --backbone"]),
    (["--backbone", "resnet18"], ["Unknown backbone. Expected one of ['mobilenet_v3_small'", "backbone='resnet18'"]),
    (["--backbone", "mobilenet_v3_small", "--image-size", "24"], ["smaller than mobilenet_v3_small takes: at least "
                                                                  "32x32", "Hint: Use an --image-size of at least 32"]),
    (["--recipe", "photo", "--backbone", "resnet50"], ["Recipe photo is not built on a backbone"]),
])
def test_bad_backbone_options_are_one_clear_error(shapes_folder, tmp_path, capsys, extra, fragments):
    from helpers import assert_clean_error, run_cli

    code, _, err = run_cli(capsys, "train", shapes_folder, *extra, "--out", tmp_path / "run")
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def test_weights_of_another_network_is_one_clear_error(shapes_folder, tmp_path, capsys):
    from helpers import assert_clean_error, run_cli

    path = weights_file("mobilenet_v3_large", tmp_path / "weights")
    code, _, err = run_cli(capsys, "train", shapes_folder, "--backbone", "mobilenet_v3_small", "--image-size", "32",
                           "--weights", path, "--out", tmp_path / "run")
    assert_clean_error(code, err, "does not fit mobilenet_v3_small", "Hint: Pass the file Keras publishes for it")


def test_auto_takes_a_backbone_only_when_its_verified_weights_are_here(tmp_path, monkeypatch):
    from PIL import Image

    from cnnkit.datasets.photos import inspect_folder
    from cnnkit.models import backbones
    from cnnkit.training.auto import choose_for_folder
    from cnnkit.training.config import TrainConfig

    for k, label in enumerate(("a", "b")):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (120, 90), (i * 60, 90 + 100 * k, 30)).save(tmp_path / "photos" / label / f"{i}.jpg")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    config = TrainConfig(data=str(tmp_path / "photos"))
    inspected = inspect_folder(config.data)
    assert choose_for_folder(inspected, config).recipe == "photo"  # nothing here
    made = weights_file("mobilenet_v3_small", tmp_path / "keras" / "models")
    assert choose_for_folder(inspected, config).recipe == "photo"  # a file, but not the one Keras pins
    entry = dataclasses.replace(get_backbone("mobilenet_v3_small"),
                                weights_hash=hashlib.md5(made.read_bytes()).hexdigest())
    monkeypatch.setitem(backbones._BY_NAME, "mobilenet_v3_small", entry)
    choice = choose_for_folder(inspected, config)
    assert (choice.recipe, choice.backbone, choice.image_size) == ("transfer", "mobilenet_v3_small", 224)
    assert "the ImageNet weights of mobilenet_v3_small are on this machine -> recipe transfer" in choice.reason
    assert choose_for_folder(inspected, dataclasses.replace(config, image_size=96)).image_size == 96


# SE blocks, nested models, padding
@pytest.mark.parametrize("name", ["efficientnet_v2_b0", "convnext_tiny", "resnet50"])
def test_explain_summarises_a_backbone_by_stage(name):
    from cnnkit.explain.table import explain_model

    model = build_model(preset_for(name, channels=1))
    table = explain_model(model)  # checks every row's shape and the parameter total against Keras
    stages = [row for row in table.rows if " stage " in row.name]
    assert len(stages) >= 4 and stages[-1].output_shape == (find_backbone(model).output.shape[-1],)
    assert [row.output_shape[:2] for row in stages[:-1]] == sorted({row.output_shape[:2] for row in stages[:-1]},
                                                                    reverse=True)  # resolution falls stage by stage
    assert sum(row.flops for row in stages) == count_flops(find_backbone(model))
    assert table.total_params == model.count_params() and "stage 1" in table.to_text()


def test_cnnkit_backbones_lists_each_with_its_costs_and_whether_weights_are_here(tmp_path, monkeypatch, capsys):
    import json

    from helpers import run_cli

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    weights_file("resnet50", tmp_path / "keras" / "models")  # a file there (its hash is checked when used)
    code, out, _ = run_cli(capsys, "backbones", "--json")
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0 and list(rows) == backbone_names()
    assert rows["resnet50"]["weights_here"] and not rows["convnext_tiny"]["weights_here"]
    assert rows["efficientnet_v2_b0"]["params"] == 5_919_312 and rows["efficientnet_v2_b0"]["imagenet_top1"] == 78.7
    code, out, _ = run_cli(capsys, "backbones")
    assert code == 0 and "efficientnet_v2_b0" in out and "GFLOPs" in out and str(tmp_path / "keras" / "models") in out


# -- recipe auto fetches its preferred backbone's weights (prepare: no training) ---------------------

AUTO_FILE = get_backbone("mobilenet_v3_small").weights_file


@pytest.fixture
def auto_photos(tmp_path, monkeypatch) -> Path:
    """Twelve 120x90 noise photos (auto's photo path) and Keras' folder of its own; auto prefers mobilenet_v3_small."""
    from PIL import Image

    from cnnkit.training import auto

    rng = np.random.default_rng(3)
    for i in range(12):
        (tmp_path / "photos" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(
            tmp_path / "photos" / "ab"[i % 2] / f"{i}.png")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(auto, "AUTO_BACKBONES", ("mobilenet_v3_small",))
    return tmp_path / "photos"


def pin_hash(monkeypatch, served: Path) -> None:
    """The registry's entry pins the served file's hash (the test's file is not ImageNet's)."""
    from cnnkit.models import backbones

    entry = dataclasses.replace(get_backbone("mobilenet_v3_small"),
                                weights_hash=hashlib.md5(served.read_bytes()).hexdigest())
    monkeypatch.setitem(backbones._BY_NAME, "mobilenet_v3_small", entry)


def auto_prepare(folder: Path, caplog, **options):
    """prepare() on the folder with recipe auto (epochs given: no budget probe); its result and the lines it logged."""
    from cnnkit.training.auto import prepare
    from cnnkit.training.config import TrainConfig

    caplog.clear()
    with caplog.at_level("INFO", logger="cnnkit.training"):
        config, _, why = prepare(TrainConfig(data=str(folder), epochs=1, near_duplicates="off", **options))
    return config, why, [r.getMessage() for r in caplog.records if r.name.startswith("cnnkit")]


def test_auto_fetches_its_backbones_weights_once_and_trains_transfer(server, auto_photos, tmp_path, monkeypatch,
                                                                     caplog, capsys):
    folder, url, httpd = server
    served = weights_file("mobilenet_v3_small", folder)
    pin_hash(monkeypatch, served)
    monkeypatch.setenv(MIRROR_ENV, url)
    config, why, lines = auto_prepare(auto_photos, caplog)
    assert lines == [f"Fetching {AUTO_FILE} (4.3 MB) from {url}{AUTO_FILE}: the ImageNet weights of "
                     f"mobilenet_v3_small, for recipe auto."]
    assert (config.recipe_name, config.preset.backbone, config.image_size) == ("transfer", "mobilenet_v3_small", 224)
    assert "photos, and the ImageNet weights of mobilenet_v3_small were fetched -> recipe transfer on " \
           "mobilenet_v3_small at 224x224" in why
    assert httpd.gets == [f"/{AUTO_FILE}"]
    assert (tmp_path / "keras" / "models" / AUTO_FILE).read_bytes() == served.read_bytes()
    assert "Downloading data from" not in capsys.readouterr().out  # Keras' own line and bar: the one line said it

    config, why, lines = auto_prepare(auto_photos, caplog)  # the second run: the verified file, no request
    assert httpd.gets == [f"/{AUTO_FILE}"] and httpd.connections == 1 and lines == []
    assert config.recipe_name == "transfer" and "mobilenet_v3_small are on this machine" in why


@pytest.mark.parametrize("network", ["refused", "silent"])
def test_auto_without_a_network_says_so_in_one_line_and_trains_from_scratch(network, server, auto_photos, tmp_path,
                                                                            monkeypatch, caplog):
    folder, url, httpd = server
    pin_hash(monkeypatch, weights_file("mobilenet_v3_small", folder))
    httpd.shutdown()
    httpd.server_close()  # refused: nothing listens on the port any more
    silent = socket.socket()  # silent: accepts connections (the kernel's backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    if network == "silent":
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    monkeypatch.setenv(MIRROR_ENV, url)
    try:
        start = time.monotonic()
        config, why, lines = auto_prepare(auto_photos, caplog)  # the real AUTO_TIMEOUT
        seconds = time.monotonic() - start
    finally:
        silent.close()
    assert seconds < 10, seconds
    assert lines == [f"Fetching {AUTO_FILE} (4.3 MB) from {url}{AUTO_FILE}: the ImageNet weights of "
                     f"mobilenet_v3_small, for recipe auto.",
                     f"No network: training from scratch (recipe photo); put {AUTO_FILE} in "
                     f"{tmp_path / 'keras' / 'models'} for transfer learning."]
    assert config.recipe_name == "photo" and not config.preset.backbone and config.backbone is None
    assert f"photos, without pretrained weights ({AUTO_FILE} could not be fetched) -> recipe photo at 80x80" in why
    assert not (tmp_path / "keras" / "models" / AUTO_FILE).exists()


def test_auto_refuses_a_wrong_hash_removes_the_file_and_trains_from_scratch(server, auto_photos, tmp_path,
                                                                            monkeypatch, caplog):
    folder, url, httpd = server
    weights_file("mobilenet_v3_small", folder)  # Keras' pinned hash stays: this file is not ImageNet's
    monkeypatch.setenv(MIRROR_ENV, url)
    config, why, lines = auto_prepare(auto_photos, caplog)
    assert httpd.gets == [f"/{AUTO_FILE}"]
    assert lines[1:] == [f"Refused the download, its hash is not the one Keras pins: training from scratch "
                         f"(recipe photo); put {AUTO_FILE} in {tmp_path / 'keras' / 'models'} for transfer learning."]
    assert config.recipe_name == "photo" and f"({AUTO_FILE} refused: not the hash Keras pins)" in why
    assert not (tmp_path / "keras" / "models" / AUTO_FILE).exists()


@pytest.mark.parametrize("forbid", ["weights none", "CNNKIT_OFFLINE"])
def test_a_forbidden_download_is_not_attempted(forbid, server, auto_photos, monkeypatch, caplog):
    """A server that would serve the right file: nothing connects to it, and nothing is said of a fetch."""
    folder, url, httpd = server
    pin_hash(monkeypatch, weights_file("mobilenet_v3_small", folder))
    monkeypatch.setenv(MIRROR_ENV, url)
    options = {"weights": "none"} if forbid == "weights none" else {}
    if forbid == "CNNKIT_OFFLINE":
        monkeypatch.setenv(OFFLINE_ENV, "1")
    config, why, lines = auto_prepare(auto_photos, caplog, **options)
    assert httpd.connections == 0 and lines == []
    assert config.recipe_name == "photo" and config.weights == options.get("weights", "imagenet")
    assert why.startswith("Recipe auto: 12 images, median 120x90 colour, all the same size: photos, without "
                          "pretrained weights (" + ("weights='none')" if options else "$CNNKIT_OFFLINE forbids the "
                                                                                      "download)"))


def test_weights_none_trains_from_scratch_even_with_verified_weights_here(auto_photos, tmp_path, monkeypatch, caplog):
    pin_hash(monkeypatch, weights_file("mobilenet_v3_small", tmp_path / "keras" / "models"))
    config, _, _ = auto_prepare(auto_photos, caplog)
    assert config.recipe_name == "transfer"  # offline (conftest), the verified file is used
    config, why, _ = auto_prepare(auto_photos, caplog, weights="none")
    assert config.recipe_name == "photo" and "(weights='none') -> recipe photo" in why


def test_weights_none_needs_no_backbone_but_a_path_and_fine_tune_do(auto_photos):
    from cnnkit.training.config import TrainConfig

    assert TrainConfig(data=str(auto_photos), recipe="photo", weights="none").resolve().weights == "none"
    for options, given in (({"weights": "/w.h5"}, "weights='/w.h5'"), ({"fine_tune": 2}, "fine_tune=2")):
        with pytest.raises(ConfigError, match=rf"Expected a backbone with .*Received: {given}, backbone=None"):
            TrainConfig(data=str(auto_photos), recipe="photo", **options).resolve()


def test_an_explicit_imagenet_offline_uses_the_verified_file_or_fails_clearly(server, tmp_path, monkeypatch):
    folder, url, httpd = server
    served = weights_file("mobilenet_v3_small", folder)
    pin_hash(monkeypatch, served)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(MIRROR_ENV, url)
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(ConfigError, match=r"Downloads are forbidden \(\$CNNKIT_OFFLINE=1\) and the ImageNet weights "
                                          r"of mobilenet_v3_small are not in .*Received: weights='imagenet'") as info:
        resolve_weights(get_backbone("mobilenet_v3_small"), "imagenet")
    assert f"copy it to {tmp_path / 'keras' / 'models' / AUTO_FILE}" in info.value.hint
    assert "unset CNNKIT_OFFLINE" in info.value.hint and httpd.connections == 0
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / AUTO_FILE).write_bytes(served.read_bytes())  # given by hand
    assert resolve_weights(get_backbone("mobilenet_v3_small"), "imagenet") == tmp_path / "keras" / "models" / AUTO_FILE
    assert httpd.connections == 0


def test_show_and_verify_fetch_nothing_and_load_no_keras(server, auto_photos, tmp_path):
    import os
    import subprocess
    import sys

    from helpers import IMPORTS_AFTER

    folder, url, httpd = server
    weights_file("mobilenet_v3_small", folder)
    env = {**os.environ, MIRROR_ENV: url, "KERAS_HOME": str(tmp_path / "keras")}  # downloads allowed (fixture)
    for argv in (["show", str(auto_photos), "--out", str(tmp_path / "grid.png")], ["verify", str(auto_photos)]):
        out = subprocess.run([sys.executable, "-c", IMPORTS_AFTER, *argv], capture_output=True, text=True,
                             timeout=120, env=env)
        assert out.stdout.strip().endswith("loaded: []"), (argv, out.stdout[-300:] + out.stderr[-300:])
        assert "Error" not in out.stderr and "Fetching" not in out.stdout + out.stderr, (argv, out.stderr[-300:])
    assert httpd.connections == 0


def test_cnnkit_train_fetches_trains_transfer_and_records_it(server, auto_photos, tmp_path, monkeypatch, capsys):
    from helpers import run_cli

    folder, url, httpd = server
    pin_hash(monkeypatch, weights_file("mobilenet_v3_small", folder))
    monkeypatch.setenv(MIRROR_ENV, url)
    code, out, err = run_cli(capsys, "train", auto_photos, "--image-size", "32", "--epochs", "1",
                             "--near-duplicates", "off", "--out", tmp_path / "run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (f"Fetching {AUTO_FILE} (4.3 MB) from {url}{AUTO_FILE}: the ImageNet weights of "
                        f"mobilenet_v3_small, for recipe auto.")
    assert lines[1].startswith("Recipe auto: 12 images") and "were fetched -> recipe transfer on mobilenet_v3_small" \
                                                              " at 32x32; 1 epochs." in lines[1]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["auto"] == lines[1] and saved["train"]["recipe"] == "transfer" and saved["train"]["backbone"] == \
        "mobilenet_v3_small"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["transfer"]["backbone"] == "mobilenet_v3_small" and httpd.gets == [f"/{AUTO_FILE}"]
