"""A folder of photos end to end: broken files reported (never dropped silently), duplicates used once,
the decoded-pixel cache, resize policies, --train-per-class, and one tiny training run.

The folders come from ``photo_factory``: three classes named like the weather set
(``cloudy1.jpg``, ``rain3.png``) plus every hazard a real photo folder ships with.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.datasets import pixelcache
from cnnkit.datasets.folder import index_folder
from cnnkit.datasets.photos import load_folder
from cnnkit.images import decode_image

from helpers import run_cli
from photo_factory import (
    BLUE,
    BROKEN,
    CLASSES,
    GREEN,
    ORANGE,
    RED,
    VALID_ODD,
    class_image,
    encode,
    weather_like,
    write_clean,
)

SIZE = 32


@pytest.fixture
def weather(tmp_path) -> Path:
    return weather_like(tmp_path / "weather")


def all_rows(dataset) -> np.ndarray:
    parts = [dataset.x_train, dataset.x_test] + ([dataset.x_val] if dataset.x_val is not None else [])
    return np.concatenate(parts)


def row_set(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


def cache_of(root: Path) -> pixelcache.DecodedImages:
    """The pixel cache of ``root``'s indexed files at ``load_folder(root, image_size=SIZE)``'s settings."""
    index = index_folder(root)
    return pixelcache.decode_all(index.paths, index.sha256, size=(SIZE, SIZE), color_mode="rgb")


def decoded_by_name(root: Path) -> tuple[dict[str, np.ndarray], dict[str, str], bool]:
    """Each indexed file's cached pixels and decode errors by file name, and whether the cache was built."""
    index = index_folder(root)
    decoded = cache_of(root)
    pixels = {p.name: np.asarray(decoded.pixels[i]) for i, p in enumerate(index.paths)}
    errors = {index.paths[i].name: reason for i, reason in decoded.errors.items()}
    return pixels, errors, decoded.built


def report_line(report: str, name: str) -> str:
    """The one report line that names ``name`` (relative to the folder)."""
    lines = [line for line in report.splitlines() if line.startswith(f"  {name}: ")]
    assert len(lines) == 1, f"expected one line for {name} in:\n{report}"
    return lines[0]


def assert_broken_files_reported(text: str) -> None:
    for name, (_, reason) in BROKEN.items():
        assert reason in report_line(text, name)
    for name in VALID_ODD:
        assert f"  {name}: " not in text  # a valid odd file is used, not reported


# --- broken and odd files ------------------------------------------------------------------------


def test_broken_files_are_reported_and_valid_odd_files_are_used(weather):
    dataset = load_folder(weather, image_size=SIZE)
    assert dataset.class_names == list(CLASSES)
    report = dataset.report
    assert_broken_files_reported(report)
    assert "Skipped 2 files:" in report and "Could not decode 4 files (skipped):" in report
    # Counts add up: every file on disk is used once or named in the report.
    used = len(dataset.x_train) + len(dataset.x_val) + len(dataset.x_test)
    files = len(list(weather.iterdir()))
    assert used == 36 + len(VALID_ODD) and used + len(BROKEN) == files
    assert (f"Split: train {len(dataset.x_train)}, val {len(dataset.x_val)}, test {len(dataset.x_test)} (seed 0)"
            in report)
    # The odd files are in the dataset: their cached rows are among its rows.
    pixels, errors, built = decoded_by_name(weather)
    assert not built  # load_folder left this exact cache behind
    assert sorted(errors) == sorted(n for n in BROKEN if n not in ("rain30.jpg", "notes.txt"))
    rows = row_set(all_rows(dataset))
    assert all(pixels[name].tobytes() in rows for name in VALID_ODD)
    assert len(rows) == used  # and no image is in the dataset twice


def test_on_disk_dataset_has_the_same_pixels(weather):
    from cnnkit.datasets.lazy import LazyImages

    in_memory = load_folder(weather, image_size=SIZE, in_memory=True)
    on_disk = load_folder(weather, image_size=SIZE, in_memory=False)
    assert isinstance(on_disk.x_train, LazyImages) and on_disk.report == in_memory.report
    for part in ("train", "val", "test"):
        assert np.array_equal(np.asarray(getattr(on_disk, f"x_{part}")), getattr(in_memory, f"x_{part}"))
        assert np.array_equal(getattr(on_disk, f"y_{part}"), getattr(in_memory, f"y_{part}"))


def test_odd_files_decode_as_intended(weather):
    pixels, _, _ = decoded_by_name(weather)

    def near(actual, colour, tol=40):
        return np.abs(actual.reshape(-1, 3).astype(int) - colour).max() <= tol

    assert np.array_equal(pixels["shine20.jpg"], np.full((SIZE, SIZE, 3), GREEN, np.uint8))  # GIF named .jpg
    expected_png = decode_image(encode(class_image("rain", 20), "PNG"), size=(SIZE, SIZE))
    assert np.array_equal(pixels["rain20.jpg"], expected_png)  # PNG named .jpg
    assert np.array_equal(pixels["rain22.gif"], np.full((SIZE, SIZE, 3), RED, np.uint8))  # first frame, not blue
    assert near(pixels["rain21.jpg"], ORANGE) and near(pixels["shine21.tif"], BLUE)  # CMYK → RGB
    rgba = pixels["cloudy20.png"]
    assert near(rgba[:, :12], RED, 0) and rgba[:, -12:].max() == 0  # transparent → black, not white
    grey = pixels["cloudy21.png"].astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert grey[:, 0].max() < 20 and grey[:, -1].min() > 235  # 0..65535 scaled to 0..255, not clipped
    # EXIF orientation 6: the stored left (red) half is shown on top.
    assert decode_image(weather / "shine22.jpg").shape == (40, 30, 3)
    rotated = pixels["shine22.jpg"]
    assert near(rotated[:12, -12:], RED) and rotated[-12:, :12].max() < 40


def test_bomb_under_monkeypatched_limit_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    write_clean(root, per_class=4)
    monkeypatch.setattr("cnnkit.images.MAX_PIXELS", 40 * 30 - 1)  # every 40x30 image is now "too large"
    (root / "rain9.png").write_bytes(encode(class_image("rain", 9, size=(20, 20)), "PNG"))
    (root / "shine9.png").write_bytes(encode(class_image("shine", 9, size=(20, 20)), "PNG"))
    _, errors, _ = decoded_by_name(root)
    assert len(errors) == 12
    assert errors["cloudy0.jpg"].startswith("Image is too large: 40x30 pixels exceeds the limit of 1,199.")
    assert "rain9.png" not in errors and "shine9.png" not in errors


def test_cli_verify_lists_every_unusable_file(capsys, weather):
    code, out, _ = run_cli(capsys, "verify", weather, "--image-size", SIZE)
    assert code == 1
    assert_broken_files_reported(out)
    assert out.rstrip().endswith(f"{len(BROKEN)} unusable files.")


def test_cli_verify_clean_folder_exits_0(capsys, tmp_path):
    write_clean(tmp_path / "clean", per_class=3)
    code, out, _ = run_cli(capsys, "verify", tmp_path / "clean", "--image-size", SIZE)
    assert code == 0 and "Decoded every image." in out and out.rstrip().endswith("0 unusable files.")


def test_cli_verify_manifest(capsys, weather):
    names = sorted(p.name for p in weather.iterdir() if p.name != "notes.txt")
    manifest = weather / "labels.csv"
    manifest.write_text("path,label\n" + "".join(f"{n},{re.match('[a-z]+', n)[0]}\n" for n in names))
    code, out, err = run_cli(capsys, "verify", manifest, "--image-size", SIZE)
    assert code == 1 and "rain30.jpg: empty file (0 bytes)" in out, err


def test_cli_show_reports_and_succeeds(capsys, weather, tmp_path):
    grid = tmp_path / "grid.png"
    code, out, _ = run_cli(capsys, "show", weather, "--image-size", SIZE, "--out", grid)
    assert code == 0
    assert_broken_files_reported(out)
    train = load_folder(weather, image_size=SIZE).x_train  # the same defaults as the command's
    assert f"x_train {train.shape} uint8" in out and grid.stat().st_size > 1000


# --- duplicates ----------------------------------------------------------------------------------


def test_duplicate_files_are_used_once(tmp_path):
    root = tmp_path / "photos"
    write_clean(root)
    shutil.copy(root / "cloudy1.jpg", root / "rain40.jpg")  # same bytes, another class
    shutil.copy(root / "cloudy1.jpg", root / "cloudy41.jpg")  # same bytes, same class
    dataset = load_folder(root, image_size=SIZE)
    rows = all_rows(dataset)
    assert len(rows) == 36 and len(row_set(rows)) == 36
    pixels, _, _ = decoded_by_name(root)
    [where] = np.flatnonzero([r.tobytes() == pixels["cloudy1.jpg"].tobytes() for r in rows])
    labels = np.concatenate([dataset.y_train, dataset.y_test, dataset.y_val])
    assert dataset.class_names[labels[where]] == "cloudy"
    assert "Duplicates: 2 byte-identical copies dropped" in dataset.report
    assert "rain40.jpg -> cloudy1.jpg  conflicting labels: 'rain' vs kept 'cloudy'" in dataset.report


def test_duplicates_across_presplit_folders_stay_in_train(tmp_path):
    root = tmp_path / "photos"
    write_clean(root / "train", per_class=6)
    for split, start in (("val", 50), ("test", 70)):
        (root / split).mkdir()
        for label in CLASSES:
            for i in range(start, start + 3):
                (root / split / f"{label}{i}.png").write_bytes(encode(class_image(label, i), "PNG"))
    shutil.copy(root / "train" / "rain1.jpg", root / "test" / "rain90.jpg")
    shutil.copy(root / "train" / "rain1.jpg", root / "val" / "rain91.jpg")
    dataset = load_folder(root, image_size=SIZE)
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (18, 9, 9)
    copy = decode_image(root / "train" / "rain1.jpg", size=(SIZE, SIZE)).tobytes()
    assert copy in row_set(dataset.x_train)
    assert copy not in row_set(dataset.x_val) | row_set(dataset.x_test)
    assert len(row_set(all_rows(dataset))) == 36
    assert "test/rain90.jpg -> train/rain1.jpg" in dataset.report


# --- decoded-pixel cache -------------------------------------------------------------------------


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = pixelcache.decode_image

    def counting(source, **kwargs):
        calls.append(Path(source).name)
        return real(source, **kwargs)

    monkeypatch.setattr(pixelcache, "decode_image", counting)
    return calls


def test_second_load_decodes_nothing(tmp_path, decode_calls):
    root = tmp_path / "photos"
    write_clean(root, per_class=4)
    first = load_folder(root, image_size=SIZE)
    assert len(decode_calls) == 12
    decode_calls.clear()
    second = load_folder(root, image_size=SIZE)
    assert decode_calls == []
    assert np.array_equal(first.x_train, second.x_train) and np.array_equal(first.x_test, second.x_test)
    os.utime(root / "rain1.jpg", (1, 1))  # a new mtime, the same bytes: still the same cache
    load_folder(root, image_size=SIZE)
    assert decode_calls == []
    load_folder(root, image_size=SIZE, resize="pad")  # other decode settings: another cache
    assert len(decode_calls) == 12


def test_changed_file_rebuilds_the_cache(tmp_path, decode_calls):
    root = tmp_path / "photos"
    write_clean(root, per_class=4)
    before = load_folder(root, image_size=SIZE)
    cached = cache_of(root)
    assert not cached.built
    green = np.zeros((SIZE, SIZE, 3), np.uint8)
    green[..., 1] = 255
    (root / "rain1.jpg").write_bytes(encode(Image.fromarray(green), "PNG"))  # new bytes under the same name
    decode_calls.clear()
    after = load_folder(root, image_size=SIZE)
    assert len(decode_calls) == 12
    assert green.tobytes() in row_set(all_rows(after)) and green.tobytes() not in row_set(all_rows(before))
    assert cache_of(root).folder != cached.folder


def test_parallel_decode_matches_serial(weather, tmp_path):
    index = index_folder(weather)
    paths, hashes = index.paths * 2, index.sha256 * 2  # over one 64-file chunk, so the spawn pool really runs
    kwargs = {"size": (SIZE, SIZE), "color_mode": "rgb"}
    parallel = pixelcache.decode_all(paths, hashes, workers=2, home=tmp_path / "a", **kwargs)
    serial = pixelcache.decode_all(paths, hashes, workers=1, home=tmp_path / "b", **kwargs)
    assert parallel.built and serial.built
    assert np.array_equal(np.asarray(parallel.pixels), np.asarray(serial.pixels))
    assert parallel.errors == serial.errors and len(parallel.errors) == 8
    assert int(np.asarray(parallel.pixels)[parallel.ok].max()) > 0


# --- resize policies and --train-per-class --------------------------------------------------------


def test_resize_policies_give_different_pixels(tmp_path):
    root = tmp_path / "photos"
    write_clean(root, per_class=4)
    loaded = {policy: load_folder(root, image_size=SIZE, resize=policy) for policy in ("stretch", "crop", "pad")}
    assert {p: d.resize for p, d in loaded.items()} == {"stretch": "stretch", "crop": "crop", "pad": "pad"}
    x = {p: d.x_train for p, d in loaded.items()}
    assert all(np.array_equal(loaded["stretch"].y_train, d.y_train) for d in loaded.values())
    assert not np.array_equal(x["stretch"], x["crop"]) and not np.array_equal(x["stretch"], x["pad"])
    assert not np.array_equal(x["crop"], x["pad"])
    # 40x30 into 32x32: pad keeps the aspect ratio (32x24) and adds 4 black rows above and below.
    assert x["pad"][:, :4].max() == 0 and x["pad"][:, -4:].max() == 0 and x["pad"][:, 4:-4].min(axis=(1, 2, 3)).all()
    assert x["stretch"][:, :4].max(axis=(1, 2, 3)).all() and x["crop"][:, :4].max(axis=(1, 2, 3)).all()


def test_train_per_class_gives_exactly_n(tmp_path):
    root = tmp_path / "photos"
    write_clean(root)
    dataset = load_folder(root, image_size=SIZE, train_per_class=5, val_fraction=0.25)
    assert np.bincount(dataset.y_train).tolist() == [5, 5, 5]
    train, val, test = row_set(dataset.x_train), row_set(dataset.x_val), row_set(dataset.x_test)
    assert not train & test and not train & val and not val & test
    assert len(train | val | test) == 36


def test_train_per_class_is_exact_despite_broken_files(weather):
    dataset = load_folder(weather, image_size=SIZE, train_per_class=10)
    assert np.bincount(dataset.y_train).tolist() == [10, 10, 10]


# --- one tiny training run -----------------------------------------------------------------------


def test_train_on_broken_folder_then_predict_odd_files(capsys, weather, tmp_path):
    from cnnkit.artifact import read_metadata

    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", weather, "--recipe", "photo", "--image-size", SIZE, "--epochs", 1,
                             "--resize", "pad", "--out", run)
    assert code == 0, err
    assert_broken_files_reported(out)  # on the console ...
    assert_broken_files_reported((run / "data_report.txt").read_text())  # ... and in the run folder
    meta = read_metadata(run)
    assert meta["resize"] == "pad" and meta["input_shape"] == [SIZE, SIZE, 3]
    assert meta["class_names"] == list(CLASSES) and meta["color_mode"] == "rgb"
    odd = [weather / "rain20.jpg", weather / "shine22.jpg", weather / "shine21.tif"]
    code, out, err = run_cli(capsys, "predict", run, *odd)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(p) for p in odd]
    assert all(line.split(": ")[1].split(" ")[0] in CLASSES for line in lines)
    code, _, err = run_cli(capsys, "predict", run, weather / "shine30.jpg")
    assert code == 1 and f"{weather / 'shine30.jpg'}: error: Cannot decode image" in err


def test_training_streams_a_folder_left_on_disk(capsys, weather, tmp_path, monkeypatch):
    """A folder whose decoded pixels exceed the in-memory limit trains and evaluates from the cache."""
    import json

    from cnnkit.datasets import photos

    monkeypatch.setattr(photos, "IN_MEMORY_LIMIT", 0)  # every folder is "larger than memory"
    ds = photos.load_folder(weather, image_size=SIZE)
    assert type(ds.x_train).__name__ == "LazyImages"
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", weather, "--recipe", "photo", "--image-size", SIZE, "--epochs", 1,
                           "--out", run)
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == len(ds.x_test) and 0 <= metrics["test_accuracy"] <= 1
    assert (run / "predictions.png").stat().st_size > 1000


@pytest.mark.backends
@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "streamed"])
def test_steps_per_epoch_is_a_cap_not_a_demand(weather, tmp_path, monkeypatch, on_disk):
    """`--steps-per-epoch N` above one pass over the data runs one whole pass each epoch, on both input paths.

    Before, a streamed folder ran dry mid-epoch (Keras: "Your input ran out of data"), and
    in-memory arrays ran N steps while the learning-rate schedule had planned one pass.
    """
    import math
    import warnings

    import keras

    from cnnkit.datasets import photos
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.fit import fit

    if on_disk:
        monkeypatch.setattr(photos, "IN_MEMORY_LIMIT", 0)
    dataset = photos.load_folder(weather, image_size=SIZE)
    assert (type(dataset.x_train).__name__ == "LazyImages") == on_disk
    config = TrainConfig(recipe="photo", data=str(weather), epochs=2, batch_size=8, steps_per_epoch=1000,
                         image_size=SIZE).resolve()
    last_step: list[int] = []

    class LastStep(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            last_step.append(-1)

        def on_train_batch_end(self, batch, logs=None):
            last_step[-1] = batch

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ran out of data.*")
        result = fit(dataset, config, tmp_path / "run", verbose=0, callbacks=[LastStep()])
    one_pass = math.ceil(result.train_size / 8)
    assert last_step == [one_pass - 1, one_pass - 1]
    assert result.images_per_epoch == result.train_size
