"""The command line: each command end to end, and bad input as one clear line, no traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.datasets.idx import write_idx
from cnnkit.images import encode_png

from conftest import MNIST_SUBSET


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, *fragments):
    assert code != 0
    assert err.startswith("Error: ")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # "Error: …" and at most one "Hint: …"
    for fragment in fragments:
        assert fragment in err


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
    assert_clean_error(code, err, "Unknown preset", "resnet9000", "cnnkit summary --list")


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
