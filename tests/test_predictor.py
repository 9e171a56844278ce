"""Prediction on raw pixels and on image files goes through one decode path and agrees."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.errors import DataError
from cnnkit.images import encode_png

pytestmark = pytest.mark.backends


def test_png_file_predicts_like_in_process_pixels(trained_run, mnist_subset, tmp_path):
    """Acceptance: the saved model on a raw PNG equals the in-process model on the same pixels."""
    pixels = mnist_subset.x_test[:8]
    paths = []
    for i, image in enumerate(pixels):
        paths.append(tmp_path / f"digit{i}.png")
        paths[-1].write_bytes(encode_png(image))
    saved = cnnkit.load(trained_run.run_dir)
    from_files = saved.predict_proba(saved.load_files(paths))
    in_process, _ = cnnkit.artifact.load_model(trained_run.run_dir)
    direct = keras.ops.convert_to_numpy(in_process(pixels, training=False))
    assert np.abs(from_files - direct).max() <= 1e-5


def test_predict_files_labels_and_top_k(trained_run, mnist_subset, tmp_path):
    path = tmp_path / "seven.png"
    path.write_bytes(encode_png(mnist_subset.x_test[0]))
    [pred] = cnnkit.load(trained_run.run_dir).predict_files([path], top_k=3)
    assert pred.label in [str(i) for i in range(10)]
    assert len(pred.top_k) == 3 and pred.top_k[0] == (pred.label, pred.probability)
    assert pred.top_k[0][1] >= pred.top_k[1][1] >= pred.top_k[2][1]


def test_colour_and_size_are_converted_by_the_shared_decoder(trained_run, mnist_subset, tmp_path):
    grey = mnist_subset.x_test[0, :, :, 0]
    big_rgb = Image.fromarray(np.stack([grey] * 3, axis=-1)).resize((56, 56), Image.Resampling.NEAREST)
    big_rgb.save(tmp_path / "big.png")
    predictor = cnnkit.load(trained_run.run_dir)
    assert predictor.load_files([tmp_path / "big.png"]).shape == (1, 28, 28, 1)


def test_wrong_shape_names_expected_and_received(trained_run):
    predictor = cnnkit.load(trained_run.run_dir)
    with pytest.raises(DataError,
                       match=r"Expected uint8 images of shape \(N, 28, 28, 1\), or one image \(28, 28, 1\)\. "
                             r"Received: shape=\(2, 32, 32, 3\)"):
        predictor.predict_proba(np.zeros((2, 32, 32, 3), dtype=np.uint8))


def test_scaled_floats_are_refused(trained_run):
    predictor = cnnkit.load(trained_run.run_dir)
    with pytest.raises(DataError, match="Expected raw uint8 pixels 0-255"):
        predictor.predict_proba(np.zeros((1, 28, 28, 1), dtype=np.float32))


def test_single_image_without_channel_axis_is_accepted(trained_run, mnist_subset):
    predictor = cnnkit.load(trained_run.run_dir)
    one = predictor.predict_proba(mnist_subset.x_test[0, :, :, 0])
    batch = predictor.predict_proba(mnist_subset.x_test[:1])
    np.testing.assert_allclose(one, batch, atol=1e-6)
