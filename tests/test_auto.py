"""--recipe auto: the recipe, size and colour come from the data; whatever the user set wins."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from PIL import Image

from cnnkit.datasets.photos import inspect_folder
from cnnkit.training import fit
from cnnkit.training.auto import DEFAULT_BUDGET_MINUTES, choose_for_arrays, choose_for_folder, fit_side, prepare
from cnnkit.training.budget import Plan
from cnnkit.training.config import TrainConfig

from helpers import MNIST_SUBSET, assert_clean_error, run_cli


def _grey_digits(root, n=12, side=28):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(root / f"{'ab'[i % 2]}{i}.png")
    return root


def _photos(root, n=12, size=(160, 120)):
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(image).save(root / f"{'ab'[i % 2]}{i}.jpg", quality=90)
    return root


def test_small_grey_images_stay_at_their_size_and_colour(tmp_path):
    choice = choose_for_folder(inspect_folder(_grey_digits(tmp_path / "d")), TrainConfig(data=str(tmp_path / "d")))
    assert (choice.recipe, choice.image_size, choice.color_mode) == ("small", 28, "grayscale")
    assert choice.reason == ("12 images, median 28x28 grey, all the same size: small images, kept at 28x28 "
                             "-> recipe small")


def test_photos_get_the_photo_recipe_at_a_side_from_their_sizes(tmp_path):
    choice = choose_for_folder(inspect_folder(_photos(tmp_path / "p")), TrainConfig(data=str(tmp_path / "p")))
    assert (choice.recipe, choice.image_size, choice.color_mode) == ("photo", 112, "rgb")  # 120 // 16 * 16
    assert choice.reason.endswith("photos -> recipe photo at 112x112")


def test_what_the_user_set_wins(tmp_path):
    inspected = inspect_folder(_photos(tmp_path / "p"))
    config = TrainConfig(data=str(tmp_path / "p"), image_size=64, color_mode="grayscale")
    assert dataclasses.astuple(choose_for_folder(inspected, config))[:3] == ("photo", 64, "grayscale")
    resolved, _, why = prepare(TrainConfig(data=str(tmp_path / "p"), recipe="article-003", image_size=48))
    assert (resolved.recipe_name, resolved.image_size, why) == ("article-003", 48, "")


def test_a_tight_budget_shrinks_the_photo_side(tmp_path, monkeypatch):
    inspected = inspect_folder(_photos(tmp_path / "p", size=(300, 200)))
    config = TrainConfig(data=str(tmp_path / "p"))
    choice = choose_for_folder(inspected, config)
    assert choice.image_size == 160  # 200 // 16 * 16 = 192, capped at 160
    seen = []

    def fake_probe(trial, input_shape, num_classes, n_train, n_val):  # the clock, not the choice, is faked
        seen.append((input_shape, num_classes, trial.budget, trial.batch_size))
        return Plan(trial.budget * 60, epochs, 1, 0.1, 1.0, 32)

    monkeypatch.setattr(fit, "probe_plan", fake_probe)
    epochs = 60  # the recipe's own epochs fit: the side stays
    assert fit_side(choice, inspected, config, 10.0) == choice
    assert seen == [((160, 160, 3), 2, 10.0, 8)]  # steps of 8 photos at 160 px: a quarter of the recipe's memory
    epochs = 45  # three quarters of them (MIN_EPOCH_SHARE): the side still stays
    assert fit_side(choice, inspected, config, 10.0) == choice
    epochs = 20  # 4/9 of the 45 wanted: two thirds of the side, 106.7 -> 96
    smaller = fit_side(choice, inspected, config, 10.0)
    assert smaller.image_size == 96 and "at 96x96" in smaller.reason
    assert "the 10-minute budget holds 20 of the recipe's 60 epochs, so 96x96" in smaller.reason
    epochs = 1  # never below MIN_PHOTO_SIDE
    assert fit_side(choice, inspected, config, 1.0).image_size == 64
    epochs = 40  # sqrt(40/45) * 160 = 150.8 -> 144
    assert fit_side(choice, inspected, config, 10.0).image_size == 144


def test_arrays_are_used_at_their_own_size():
    from cnnkit.datasets import load

    assert choose_for_arrays(load(str(MNIST_SUBSET))).recipe == "small"
    assert TrainConfig(data="mnist").resolve().recipe_name == "fast"  # MNIST keeps its recipe


def test_auto_plans_a_budget_unless_epochs_are_given(tmp_path):
    folder = _grey_digits(tmp_path / "d", n=20)
    config, dataset, why = prepare(TrainConfig(data=str(folder)))
    assert config.budget == DEFAULT_BUDGET_MINUTES and why.endswith(f"budget {DEFAULT_BUDGET_MINUTES:g} min.")
    assert dataset.input_shape == (28, 28, 1) and config.recipe_name == "small"
    config, _, why = prepare(TrainConfig(data=str(folder), epochs=3))
    assert config.budget is None and config.epochs == 3 and why.endswith("; 3 epochs.")


def test_train_says_what_auto_chose_and_records_it(tmp_path, capsys):
    folder = _grey_digits(tmp_path / "d", n=24)
    code, out, _ = run_cli(capsys, "train", folder, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 0, out
    assert out.splitlines()[0].startswith("Recipe auto: 24 images, median 28x28 grey")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["recipe"] == "small" and saved["auto"].startswith("Recipe auto: ")
    assert saved["data_profile"]["width"] == [28, 28, 28] and saved["data_profile"]["modes"] == {"grey": 24}


def test_mixed_sizes_under_an_image_size_the_recipe_cannot_hold(tmp_path, capsys):
    """Photos of many sizes, squeezed to a side the recipe's pooling takes to nothing: one error, no run folder."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i, size in enumerate([(40, 30), (200, 150), (640, 480), (97, 311)] * 3):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{'ab'[i % 2]}{i}.jpg")
    code, _, err = run_cli(capsys, "train", folder, "--image-size", "4", "--out", tmp_path / "run")
    assert_clean_error(code, err, "Expected an image size between 8 and 1024 pixels. Received: image_size=4.")
    code, _, err = run_cli(capsys, "train", folder, "--recipe", "article-003", "--image-size", "32",
                           "--out", tmp_path / "run")
    assert_clean_error(code, err, "The input is too small for the layers of article-003",
                       "Hint: Use an --image-size of at least 48.")
    assert not (tmp_path / "run").exists()


def test_a_class_too_small_to_split_is_named(tmp_path, capsys):
    folder = _grey_digits(tmp_path / "d", n=12)
    for extra in list(folder.glob("b*.png"))[1:]:
        extra.unlink()  # class b keeps one image
    code, _, err = run_cli(capsys, "train", folder, "--epochs", "1", "--out", tmp_path / "run")
    assert_clean_error(code, err, "Expected at least 2 images in every class", "Received: 'b' has 1",
                       "Hint: Add images")
    assert not (tmp_path / "run").exists()
