"""Calibration (ECE, reliability bins) and top losses, against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnkit.diagnostics import calibration, top_losses
from cnnkit.errors import ConfigError, DataError
from cnnkit.plots import plot_reliability


def test_ece_by_hand():
    # Confidences 0.9 (right), 0.8 (right), 0.6 (wrong), 0.6 (right) in 10 bins:
    # bin (0.8, 0.9]: acc 1, conf 0.9 → gap 0.1, weight 1/4
    # bin (0.7, 0.8]: acc 1, conf 0.8 → gap 0.2, weight 1/4
    # bin (0.5, 0.6]: acc 0.5, conf 0.6 → gap 0.1, weight 2/4
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.4, 0.6]])
    cal = calibration(y, probs, bins=10)
    assert cal.ece == pytest.approx(0.25 * 0.1 + 0.25 * 0.2 + 0.5 * 0.1)
    assert cal.mce == pytest.approx(0.2)
    assert cal.count.sum() == 4
    assert cal.count[8] == 1 and cal.count[7] == 1 and cal.count[5] == 2
    assert np.isnan(cal.accuracy[0])  # empty bins are NaN, not 0
    assert cal.to_dict()["accuracy"][0] is None


def test_confidence_one_lands_in_the_last_bin():
    cal = calibration(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]), bins=15)
    assert cal.count[-1] == 2 and cal.ece == pytest.approx(0.0)


def test_a_calibrated_model_has_small_ece_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(0)
    n, k = 20_000, 10
    conf = rng.uniform(0.1, 1.0, n)
    y = rng.integers(0, k, n)
    right = rng.uniform(size=n) < conf  # right exactly as often as it claims
    pred = np.where(right, y, (y + 1) % k)
    probs = np.full((n, k), 0.0)
    probs[np.arange(n), pred] = conf
    rest = (1 - conf) / (k - 1)
    for c in range(k):
        probs[:, c] = np.where(pred == c, conf, rest)
    assert calibration(y, probs).ece < 0.02
    # Same predictions, every confidence pushed to 0.999: the gap becomes 0.999 − accuracy.
    sharp = np.where(probs == conf[:, None], 0.999, 0.001 / (k - 1))
    accuracy = right.mean()
    assert calibration(y, sharp).ece == pytest.approx(0.999 - accuracy, abs=1e-6)


def test_top_losses_are_the_most_wrong_first():
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.01, 0.98, 0.01]])
    order, losses = top_losses(y, probs, k=2)
    assert order.tolist() == [3, 1]
    assert losses == pytest.approx([-np.log(0.01), -np.log(0.2)])


def test_reliability_diagram_is_a_png(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=200)
    path = plot_reliability(calibration(rng.integers(0, 4, 200), probs), tmp_path / "r.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200


@pytest.mark.parametrize(("y", "probs", "match"), [
    ([0, 1], [[1.0, 0.0]], r"one label per image in y_true\. Received: 2 labels for 1 image\."),
    ([0, 2], [[1.0, 0.0], [0.0, 1.0]], r"y_true values in \[0, 2\) for 2 classes\. Received: min=0, max=2"),
    ([0], [1.0, 0.0], r"shaped \(N, classes\)"),
    ([0.0], [[1.0, 0.0]], r"integer class labels\. Received: shape=\(1,\), dtype=float64"),
])
def test_bad_inputs_say_what_was_received(y, probs, match):
    with pytest.raises(DataError, match=match):
        calibration(np.asarray(y), np.asarray(probs))


def test_bad_bins_and_k():
    with pytest.raises(ConfigError, match="bins=0"):
        calibration([0], [[1.0, 0.0]], bins=0)
    with pytest.raises(ConfigError, match="k=0"):
        top_losses([0], [[1.0, 0.0]], k=0)
