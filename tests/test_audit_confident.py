"""Confident learning against the paper's definitions (Northcutt, Jiang and Chuang, JAIR 2021) on matrices
small enough to work out by hand, and on a simulated noisy set where the flipped labels are known."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.audits.confident import (
    calibrated_joint,
    claimed_by,
    confident_joint,
    find_label_issues,
    normalized_margin,
    thresholds,
)
from cnnkit.errors import ConfigError

# Six images, three classes. Worked by hand below.
PROBS = np.array([
    [0.80, 0.10, 0.10],  # labelled 0, looks like 0
    [0.60, 0.30, 0.10],  # labelled 0, reaches no threshold (t0 = 0.7, t1 = 0.6, t2 = 0.75): a stray
    [0.10, 0.80, 0.10],  # labelled 1, looks like 1
    [0.75, 0.20, 0.05],  # labelled 1, looks like 0: a label error
    [0.05, 0.15, 0.80],  # labelled 2, looks like 2
    [0.20, 0.10, 0.70],  # labelled 2, looks like 2
])
LABELS = np.array([0, 0, 1, 1, 2, 2])


def test_thresholds_are_the_mean_self_confidence_of_each_class():
    # t_j = mean of p_j over images labelled j: (0.8 + 0.6) / 2, (0.8 + 0.2) / 2, (0.8 + 0.7) / 2
    np.testing.assert_allclose(thresholds(PROBS, LABELS), [0.7, 0.5, 0.75])


def test_the_confident_joint_counts_each_image_under_the_class_that_claims_it():
    # Row 1: 0.6 < 0.7, 0.3 < 0.5, 0.1 < 0.75: nobody claims it. Row 3: 0.75 >= 0.7 and 0.2 < 0.5: class 0.
    # Row 5: p2 = 0.7 < 0.75 but nothing else reaches its threshold either (0.2 < 0.7): a stray too.
    np.testing.assert_array_equal(claimed_by(PROBS, LABELS), [0, -1, 1, 0, 2, -1])
    np.testing.assert_array_equal(confident_joint(PROBS, LABELS), [[1, 0, 0], [1, 1, 0], [0, 0, 1]])


def test_an_image_over_two_thresholds_goes_to_the_more_probable_class():
    probs = np.array([[0.3, 0.7, 0.0], [0.1, 0.9, 0.0], [0.35, 0.65, 0.0], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 1, 2])  # t0 = 0.3, t1 = (0.9 + 0.65 + 0.4) / 3 = 0.65
    # Row 0 reaches both (0.3 >= 0.3, 0.7 >= 0.65) and 1 is the more probable; row 3 reaches only t0.
    np.testing.assert_array_equal(claimed_by(probs, labels), [1, 1, 1, 0, 2])


def test_calibration_rescales_rows_to_the_label_counts_and_sums_to_one():
    joint = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    q = calibrated_joint(joint, LABELS)  # rows to 2, 2, 2 images: [[2,0,0],[1,1,0],[0,0,2]] / 6
    np.testing.assert_allclose(q, np.array([[2, 0, 0], [1, 1, 0], [0, 0, 2]]) / 6)
    assert q.sum() == pytest.approx(1.0)


def test_prune_by_noise_rate_finds_the_flipped_image_and_the_strays():
    found = find_label_issues(PROBS, LABELS)
    np.testing.assert_array_equal(found.issues, [3])  # n Q[1, 0] = 1: the largest p0 - p1 among the 1s
    assert found.suggested[3] == 0
    np.testing.assert_array_equal(found.strays, [1, 5])  # least claimed first: max 0.6, then 0.7
    np.testing.assert_allclose(found.noise_share(), [0.0, 0.5, 0.0])
    assert found.confused_pairs() == [(1, 0, 1)]
    np.testing.assert_allclose(normalized_margin(PROBS, LABELS), [0.7, 0.3, 0.7, -0.55, 0.65, 0.5])


def test_ranking_by_margin_or_self_confidence():
    clean = [[0.5, 0.25, 0.25]] * 4 + [[0.2, 0.8, 0.0]] * 4 + [[0.0, 0.0, 1.0]] * 4
    probs = np.array(clean + [[0.05, 0.95, 0.0], [0.2, 0.8, 0.0], [0.45, 0.45, 0.1]])
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4 + [0, 0, 2])
    by_margin = find_label_issues(probs, labels).issues
    by_confidence = find_label_issues(probs, labels, rank_by="self_confidence").issues
    assert set(by_margin) == set(by_confidence) == {12, 13, 14}
    np.testing.assert_array_equal(by_margin, [12, 13, 14])  # p_given - max other: -0.9, -0.6, -0.35
    np.testing.assert_array_equal(by_confidence, [12, 14, 13])  # p_given: 0.05, 0.1, 0.2


def test_flipped_labels_of_a_simulated_set_are_found():
    """A model right 95 % of the time on 2,000 images of 4 classes, 5 % of the labels flipped: the flipped
    ones come first."""
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 4.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    flipped = rng.choice(n, n // 20, replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, k, len(flipped))) % k
    found = find_label_issues(probs, labels)
    top = set(found.issues[:len(flipped)].tolist())
    assert len(top & set(flipped.tolist())) / len(flipped) >= 0.9
    assert found.noise_share().mean() == pytest.approx(0.05, abs=0.02)


@pytest.mark.parametrize("probs, labels, match", [
    (np.ones((3, 2)) / 2, np.array([0, 1]), r"shape \(n, classes\) and n labels. Received: probs of shape \(3, 2\)"),
    (np.ones((2, 2)) / 2, np.array([0, 2]), r"integer labels in \[0, 2\). Received: labels of dtype int64 from 0 to 2"),
    (np.ones((2, 2)), np.array([0, 1]), r"sum to 1 \(a softmax output\). Received: row sums from 2.000 to 2.000"),
])
def test_bad_probabilities_are_refused_with_what_was_received(probs, labels, match):
    with pytest.raises(ConfigError, match=match):
        find_label_issues(probs, labels)
    with pytest.raises(ConfigError, match="rank_by to be 'margin' or 'self_confidence'"):
        find_label_issues(np.ones((2, 2)) / 2, np.array([0, 1]), rank_by="loss")
