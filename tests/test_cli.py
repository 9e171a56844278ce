"""The command line: each command end to end, and bad input as one clear line, no traceback."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.datasets.idx import write_idx
from cnnkit.images import encode_png

from helpers import IMPORTS_AFTER, MNIST_SUBSET, assert_clean_error, run_cli


@pytest.mark.parametrize("name,total", [("article-000", "203,434"), ("article-001", "47,410"),
                                        ("article-002", "484,714"), ("article-004", "1,199,882")])
def test_summary_shows_seeds_parameter_counts(capsys, name, total):
    code, out, _ = run_cli(capsys, "summary", name)
    assert code == 0 and f"Total params: {total}" in out


def test_summary_lists_presets(capsys):
    code, out, _ = run_cli(capsys, "summary", "--list")
    assert code == 0 and "article-004" in out and "fast" in out


def test_unknown_preset(capsys):
    code, _, err = run_cli(capsys, "train", str(MNIST_SUBSET), "--recipe", "resnet9000")
    assert_clean_error(code, err, "Unknown recipe", "resnet9000", "cnnkit summary --list")


def test_missing_dataset_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", str(tmp_path / "nope.npz"))
    assert_clean_error(code, err, "nope.npz")


def test_unknown_dataset_name(capsys):
    code, _, err = run_cli(capsys, "show", "cifar")
    assert_clean_error(code, err, "cifar", "mnist")


def test_wrong_image_shape_in_arrays(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    x = np.zeros((20, 28, 28, 2), dtype=np.uint8)
    np.savez(bad, x_train=x, y_train=np.arange(20) % 2, x_test=x, y_test=np.arange(20) % 2)
    code, _, err = run_cli(capsys, "train", str(bad))
    assert_clean_error(code, err, "(20, 28, 28, 2)")


def test_corrupt_mnist_download(capsys, tmp_path):
    """A damaged copy of MNIST is caught by its SHA-256, whatever the source."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, array in [("train-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28), dtype=np.uint8)),
                        ("train-labels-idx1-ubyte", np.arange(10, dtype=np.uint8)),
                        ("t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28), dtype=np.uint8)),
                        ("t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))]:
        (folder / f"{name}.gz").write_bytes(gzip.compress(write_idx(array)))
    code, _, err = run_cli(capsys, "train", "mnist", "--from", str(folder))
    assert_clean_error(code, err, "checksum")


def test_errors_exit_without_traceback_from_the_real_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cnnkit.cli", "predict", str(tmp_path / "no-run"), "x.png"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert out.stderr.startswith("Error: Model not found") and "Traceback" not in out.stderr


def test_debug_shows_the_traceback(capsys):
    from cnnkit.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "summary", "nope"])


def test_bad_option_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["train", "--epochs", "three"])
    assert excinfo.value.code == 2


def test_predict_export_and_predict_again(capsys, trained_run, mnist_subset, tmp_path):
    png = tmp_path / "digit.png"
    png.write_bytes(encode_png(mnist_subset.x_test[0]))
    code, out, _ = run_cli(capsys, "predict", str(trained_run.run_dir), str(png), "--top-k", "2")
    assert code == 0 and out.startswith(f"{png}: ") and "top-2:" in out
    code, exported, _ = run_cli(capsys, "export", str(trained_run.run_dir), "--out", str(tmp_path / "exp"))
    assert code == 0 and "model.json" in exported
    code, again, _ = run_cli(capsys, "predict", str(tmp_path / "exp" / "model.json"), str(png), "--top-k", "2")
    assert code == 0 and again == out


def test_predict_reports_bad_files_and_continues(capsys, trained_run, mnist_subset, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(encode_png(mnist_subset.x_test[1]))
    bad.write_text("not an image")
    code, out, err = run_cli(capsys, "predict", str(trained_run.run_dir), str(bad), str(good))
    assert code == 1
    assert f"{good}: " in out and f"{bad}: error: Cannot decode image" in err


def test_show_prints_counts_and_writes_grid(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "show", str(MNIST_SUBSET), "--out", str(tmp_path / "grid.png"),
                           "--split", "test", "--save-images", str(tmp_path / "pngs"))
    assert code == 0
    assert "x_train (3000, 28, 28, 1) uint8" in out and "x_test  (600, 28, 28, 1)" in out
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert len(list((tmp_path / "pngs").glob("test-*.png"))) == 9


def test_evaluate_rewrites_metrics(capsys, trained_run):
    code, out, _ = run_cli(capsys, "evaluate", str(trained_run.run_dir))
    assert code == 0 and "Test accuracy:" in out and "(n=600)" in out


def test_reproduce_prints_the_article_number_beside_ours(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "reproduce", "article-001", "--data", str(MNIST_SUBSET), "--epochs", "1",
                           "--out", str(tmp_path / "r"))
    assert code == 0
    assert "article reported val_accuracy 97.06%" in out and "cnnkit test accuracy" in out


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["summary", "--list"], ["train", "--epohcs", "3"],
                                  ["trian"], ["explain", "conv"]])
def test_light_commands_do_not_load_tensorflow(argv):
    out = subprocess.run([sys.executable, "-c", IMPORTS_AFTER, *argv], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("loaded: []"), out.stdout[-300:] + out.stderr[-300:]


def test_commands_that_print_tables_load_no_framework(tmp_path):
    """show, verify (photos larger than 64 px, where auto would look for a backbone) and backbones read files
    and print: Keras, TensorFlow, JAX and torch stay unloaded, as for --help."""
    rng = np.random.default_rng(0)
    for label in ("cloudy", "rain"):  # noise: no two alike, so the near-duplicate check groups nothing
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
            (tmp_path / "photos" / label / f"{i}.png").write_bytes(encode_png(pixels))
    photos = tmp_path / "photos"
    env = {**os.environ, "CNNKIT_HOME": str(tmp_path / "home"), "KERAS_HOME": str(tmp_path / "keras")}
    for argv in (["show", str(photos), "--out", str(tmp_path / "grid.png")], ["verify", str(photos)],
                 ["backbones"], ["show", str(MNIST_SUBSET), "--out", str(tmp_path / "digits.png")]):
        out = subprocess.run([sys.executable, "-c", IMPORTS_AFTER, *argv], capture_output=True, text=True,
                             timeout=120, env=env)
        assert out.stdout.strip().endswith("loaded: []"), (argv, out.stdout[-300:] + out.stderr[-300:])
        assert "Error" not in out.stderr, (argv, out.stderr[-300:])


def test_version(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    import cnnkit

    assert capsys.readouterr().out.strip() == f"cnnkit {cnnkit.__version__}"


def test_option_typo_is_an_error_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["train", str(MNIST_SUBSET), "--epohcs", "3"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["Error: Unrecognized arguments: --epohcs 3.",
                                "Hint: Did you mean --epochs? Run `cnnkit train --help` to see every option."]


def test_command_and_choice_typos_suggest_the_nearest(capsys):
    for argv, fragment in ((["trian"], "Did you mean 'train'?"),
                           (["train", "--schedule", "cosin"], "Did you mean 'cosine'?")):
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert err.startswith("Error: ") and f"Hint: {fragment}" in err and "usage:" not in err


def test_debug_is_accepted_after_the_command_too():
    from cnnkit.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["summary", "nope", "--debug"])


def test_reproduce_of_our_own_recipe_says_there_is_no_article_number(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "reproduce", "fast", "--data", str(MNIST_SUBSET), "--epochs", "1",
                           "--out", str(tmp_path / "r"))
    assert code == 0
    assert "(1 epoch," in out  # not "1 epochs"
    assert "fast: cnnkit's own recipe, not an article's, so there is no reported number" in out
    assert "cnnkit test accuracy" in out and "after 1 epoch in" in out


def test_predict_warns_about_colour_photos_given_to_a_digit_model(capsys, trained_run, mnist_subset, tmp_path):
    from PIL import Image

    photo = tmp_path / "sunset.jpg"
    rng = np.random.default_rng(0)
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[..., 0], sky[..., 1], sky[..., 2] = 230, np.linspace(60, 180, 400).astype(np.uint8), 40
    Image.fromarray(np.clip(sky + rng.integers(0, 20, sky.shape), 0, 255).astype(np.uint8)).save(photo)
    digit = tmp_path / "digit.png"
    digit.write_bytes(encode_png(mnist_subset.x_test[0]))
    code, out, err = run_cli(capsys, "predict", str(trained_run.run_dir), str(photo), str(digit))
    assert code == 0 and f"{photo}: " in out and f"{digit}: " in out  # still answered
    assert err.startswith("Warning: 1 of 2 images are far from what the model was trained on "
                          "(greyscale 28x28 images): 1 colour image, e.g. sunset.jpg (a colour image)."), err
    code, _, err = run_cli(capsys, "predict", str(trained_run.run_dir), str(digit))
    assert code == 0 and err == ""  # a digit like the training ones: no warning


def test_show_writes_its_grid_under_runs_not_here(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "show", str(MNIST_SUBSET))
    assert code == 0 and "Sample grid: runs/samples-mnist_subset.png" in out
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]


def test_an_image_size_too_small_for_the_recipe_is_refused_before_the_run_folder(capsys, tmp_path):
    from photo_factory import write_clean

    write_clean(tmp_path / "photos", per_class=4)
    code, _, err = run_cli(capsys, "train", str(tmp_path / "photos"), "--recipe", "article-003", "--image-size", "32",
                           "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, "The input is too small for the layers of article-003: they shrink a 32x32 image "
                                  "to nothing.", "Hint: Use an --image-size of at least 48.")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.heavy)])
def test_no_tensorflow_log_lines_from_the_api_or_a_jax_run(backend, tmp_path):
    """TensorFlow's C++ start-up lines ("oneDNN custom operations are on", absl's "All log messages before
    absl::InitializeLog()") reached the terminal from `import cnnkit` users and, on JAX, mid-training."""
    # TensorFlow prints them as it loads (building a model loads it); on JAX, Keras loaded it inside fit.
    code = ("import cnnkit\n" + ("cnnkit.build_model('fast')\n" if backend == "tensorflow" else
            f"cnnkit.train(cnnkit.TrainConfig(recipe='fast', data={str(MNIST_SUBSET)!r}, epochs=1,"
            f" train_limit=300, test_limit=100), {str(tmp_path / 'run')!r}, verbose=0)\n"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**env, "KERAS_BACKEND": backend})
    assert out.returncode == 0, out.stderr[-3000:]
    noise = [line for line in out.stderr.splitlines() if "absl::InitializeLog" in line or "oneDNN" in line
             or line[:5] in ("I0000", "W0000", "E0000")]
    assert not noise, out.stderr[-3000:]


def test_train_options_are_the_config_fields_with_their_defaults():
    """`cnnkit train` with no option is TrainConfig() with no argument: each default is written once, in the
    dataclass, and every field the command line offers is an option of train."""
    import dataclasses

    from cnnkit.cli import COMMANDS, _config
    from cnnkit.cli_options import build_parser
    from cnnkit.options import spec_of
    from cnnkit.training.config import TrainConfig

    parser = build_parser({name: "" for name in COMMANDS})
    args = parser.parse_args(["train", "photos"])
    assert _config(args, "photos") == TrainConfig(data="photos")
    offered = {f.name for f in dataclasses.fields(TrainConfig) if spec_of(f)}
    train = parser.commands["train"]
    assert offered <= {action.dest for action in train._actions}
    assert "--preset" not in train.format_help() and train.parse_args(["--preset", "fast"]).recipe == "fast"
