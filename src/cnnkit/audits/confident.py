"""Confident learning: which given labels the out-of-fold probabilities contradict (numpy only).

The method of Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels" (JAIR 2021), written here from the paper's definitions (its library, cleanlab, is AGPL-3.0):

- **Per-class thresholds** ``t_j``: the mean probability of class ``j`` over the images labelled ``j``
  (eq. 2), the confidence a model has in that class where the label says it.
- **The confident joint** ``C[i, j]``: images labelled ``i`` whose probability of ``j`` reaches ``t_j``,
  counted under the class ``j`` of highest probability among those that reach their threshold (eq. 1).
  An image that reaches no threshold is counted nowhere: no class claims it (a *stray* here).
- **Calibration** (eq. 3): each row of ``C`` rescaled to the number of images with that label, then
  the whole divided by ``n``: ``Q[i, j]``, the estimated joint of given label ``i`` and true label ``j``.
- **Which images** (the paper's "prune by noise rate", §3.2): for each ``i != j``, the ``n Q[i, j]``
  images labelled ``i`` with the largest margin ``p_j - p_i``, of those where ``j`` is believed more than
  the label (as cleanlab does, an image whose label the model predicts is not called an error).
- **Their order**: the normalised margin, ``p_given - max_{k != given} p_k`` (most negative first), or the
  self-confidence ``p_given`` (lowest first).

``probs`` must be out-of-fold: an image scored by a model that trained on it looks fine, wrong label
and all (:mod:`cnnkit.audits.folds`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.errors import ConfigError


def check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` as an (n, classes) float array whose rows sum to 1, ``labels`` as n class indices in range."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ConfigError(f"Expected probabilities of shape (n, classes) and n labels. Received: probs of shape "
                          f"{probs.shape} and labels of shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and (labels.min() < 0 or
                                                                         labels.max() >= probs.shape[1])):
        raise ConfigError(f"Expected integer labels in [0, {probs.shape[1]}). Received: labels of dtype "
                          f"{labels.dtype}" + (f" from {labels.min()} to {labels.max()}." if len(labels) else "."))
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError("Expected each row of probabilities to sum to 1 (a softmax output). Received: row sums "
                          f"from {probs.sum(axis=1).min():.3f} to {probs.sum(axis=1).max():.3f}.")
    return probs, labels.astype(np.int64)


def thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``t_j``: the mean probability of class ``j`` over the images labelled ``j`` (a class with none: 1.0).

    Example:
        >>> thresholds(np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]), np.array([0, 0, 1]))
        array([0.8, 0.8])
    """
    probs, labels = check_probs(probs, labels)
    out = np.ones(probs.shape[1])
    for j in range(probs.shape[1]):
        mine = labels == j
        if mine.any():
            out[j] = probs[mine, j].mean()
    return out


def claimed_by(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each image, the class that confidently claims it (eq. 1's ``y*``), or -1 where none reaches its threshold."""
    probs, labels = check_probs(probs, labels)
    reach = probs >= thresholds(probs, labels) - 1e-12
    masked = np.where(reach, probs, -1.0)
    return np.where(reach.any(axis=1), masked.argmax(axis=1), -1)


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``C[i, j]``: how many images labelled ``i`` are confidently claimed by class ``j``.

    Example:
        >>> confident_joint(np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.85, 0.15]]), np.array([0, 0, 1, 1]))
        array([[1, 0],
               [1, 1]])
    """
    probs, labels = check_probs(probs, labels)
    claims = claimed_by(probs, labels)
    k = probs.shape[1]
    joint = np.zeros((k, k), dtype=np.int64)
    kept = claims >= 0
    np.add.at(joint, (labels[kept], claims[kept]), 1)
    return joint


def calibrated_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``Q``: the confident joint with each row scaled to its label's count, over ``n`` (sums to 1)."""
    counts = np.bincount(labels, minlength=joint.shape[0]).astype(np.float64)
    rows = joint.sum(axis=1, keepdims=True).astype(np.float64)
    scaled = np.divide(joint, rows, out=np.zeros(joint.shape), where=rows > 0) * counts[:, None]
    total = scaled.sum()
    return scaled / total if total else scaled


def normalized_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p_given - max_{k != given} p_k`` for each image (in [-1, 1]; negative: another class is preferred)."""
    probs, labels = check_probs(probs, labels)
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    return given - others.max(axis=1)


@dataclass
class Findings:
    """What confident learning says about a labelled set."""

    issues: np.ndarray  # indices of likely label errors, most likely first
    suggested: np.ndarray  # for every image: the class that claims it, or the most probable one if none does
    self_confidence: np.ndarray  # p_given for every image
    margin: np.ndarray  # the normalised margin for every image
    strays: np.ndarray  # indices of images no class claims, least claimed first
    joint: np.ndarray  # the confident joint C
    calibrated: np.ndarray  # Q

    def noise_share(self) -> np.ndarray:
        """The estimated share of wrong labels among each class's images: ``sum_{j != i} Q[i, j] / sum_j Q[i, j]``."""
        rows = self.calibrated.sum(axis=1)
        off = rows - np.diag(self.calibrated)
        return np.divide(off, rows, out=np.zeros_like(rows), where=rows > 0)

    def confused_pairs(self) -> list[tuple[int, int, int]]:
        """``(given, claimed, count)`` for every off-diagonal cell of the confident joint, largest first."""
        k = self.joint.shape[0]
        cells = [(i, j, int(self.joint[i, j])) for i in range(k) for j in range(k) if i != j and self.joint[i, j]]
        return sorted(cells, key=lambda cell: (-cell[2], cell[0], cell[1]))


def find_label_issues(probs: np.ndarray, labels: np.ndarray, rank_by: str = "margin") -> Findings:
    """Likely label errors by pruning by noise rate, ranked by ``rank_by`` (``"margin"`` or ``"self_confidence"``).

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.95, 0.05]])
        >>> find_label_issues(probs, np.array([0, 0, 1, 1, 1])).issues  # the last image looks like a 0
        array([4])
    """
    if rank_by not in ("margin", "self_confidence"):
        raise ConfigError(f"Expected rank_by to be 'margin' or 'self_confidence'. Received: rank_by={rank_by!r}.")
    probs, labels = check_probs(probs, labels)
    n = len(labels)
    joint = confident_joint(probs, labels)
    q = calibrated_joint(joint, labels)
    claims = claimed_by(probs, labels)
    suggested = np.where(claims >= 0, claims, probs.argmax(axis=1))
    rows = np.arange(n)
    given = probs[rows, labels]
    margin = normalized_margin(probs, labels)
    chosen: list[int] = []
    for i in range(q.shape[0]):
        mine = np.flatnonzero(labels == i)
        for j in range(q.shape[1]):
            count = int(round(n * q[i, j]))
            if i == j or count == 0 or not len(mine):
                continue
            gap = probs[mine, j] - probs[mine, i]  # how much more j is believed than the label
            order = mine[np.argsort(-gap, kind="stable")]
            chosen.extend(int(x) for x in order[:count] if probs[x, j] > probs[x, i])
    picked = np.unique(np.array(chosen, dtype=np.int64))
    key = margin[picked] if rank_by == "margin" else given[picked]
    issues = picked[np.argsort(key, kind="stable")]
    none = np.flatnonzero(claims < 0)
    strays = none[np.argsort(probs[none].max(axis=1), kind="stable")]
    return Findings(issues, suggested, given, margin, strays, joint, q)
