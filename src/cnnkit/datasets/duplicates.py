"""Near-duplicates: the same photo resized, re-encoded, EXIF-rotated, lightly cropped, or saved as PNG and JPEG.

A byte hash misses all of these, and a copy on both sides of the split inflates the test score
(article 003's leak). Each image gets perceptual hashes (``imagehash.phash``: 64 bits from the
low frequencies of a 32x32 grey copy), of itself and of its three quarter turns, computed on the
decoded pixels (upright, as the decoder gives them, at :data:`HASH_SIDE` whatever the recipe's
size). Two images whose hashes differ in at most
:data:`THRESHOLD` bits, in any of the turns, are near-duplicates; groups are the connected sets.

Tiny images are left out (:data:`MIN_SIDE`): at 28 pixels the hash of a digit says more about
its class than about a copy (many 1s hash alike), so grouping them would tie whole classes
together. Byte-identical copies of them are still caught by the folder index.

The hashes are stored beside the decoded pixels in the pixel cache, whose key covers every
file's content: a second run reads them instead of computing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnkit.fileio import atomic_path

# Of 64 bits. On the weather photos (benchmarks/near_duplicates.py, RESULTS.md) resized, re-encoded,
# PNG and EXIF-rotated copies came within 4 bits of their originals and 3 % crops within 12 (median 6);
# at 8 bits every group found held one class, at 10 the first groups of two classes appeared.
THRESHOLD = 8
MIN_SIDE = 48  # native pixels (longer side) below which images are not hashed
# Every folder is hashed from its decode at this side (RGB, stretched), whatever size and colour a recipe
# trains at: the groups, and the splits they shape, do not depend on the recipe. It is the photo recipe's
# own side, so its runs decode once.
HASH_SIDE = 128
HASHES = "phash.npy"
MODES = ("group", "drop", "off")


def perceptual_hashes(pixels: np.ndarray) -> np.ndarray:
    """``(N, 4)`` uint64: the perceptual hash of each image and of its quarter turns (90°, 180°, 270°)."""
    import imagehash
    from PIL import Image

    out = np.zeros((len(pixels), 4), dtype=np.uint64)
    for i, image in enumerate(pixels):
        plane = image[..., 0] if image.shape[-1] == 1 else image
        for turn in range(4):
            bits = imagehash.phash(Image.fromarray(np.ascontiguousarray(np.rot90(plane, turn)))).hash
            out[i, turn] = np.packbits(bits.ravel()).view(">u8")[0]
    return out


def cached_hashes(folder: Path, pixels: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The pixel cache's hashes (computed once, then read); rows that did not decode are 0."""
    path = Path(folder) / HASHES
    if path.is_file():
        hashes = np.load(path)
        if hashes.shape == (len(pixels), 4):
            return hashes
    hashes = np.zeros((len(pixels), 4), dtype=np.uint64)
    rows = np.flatnonzero(ok)
    for start in range(0, len(rows), 512):  # a memory map's rows, a chunk at a time
        chunk = rows[start:start + 512]
        hashes[chunk] = perceptual_hashes(np.asarray(pixels[chunk]))
    try:
        with atomic_path(path) as tmp:
            np.save(tmp, hashes)
    except OSError:  # a read-only cache still serves its pixels; the hashes are only not kept
        pass
    return hashes


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.unpackbits(values.view(np.uint8).reshape(*values.shape, 8), axis=-1).sum(axis=-1)


def near_duplicate_groups(hashes: np.ndarray, candidates: Sequence[int] | np.ndarray,
                          threshold: int = THRESHOLD) -> list[list[int]]:
    """Groups (sorted lists of row indices, two or more each) of near-identical images among ``candidates``.

    Two rows join when one's upright hash is within ``threshold`` bits of any of the other's four
    turns. Candidate pairs come from bands of the hashes that agree exactly (``threshold + 1`` bands:
    two hashes that differ in at most ``threshold`` bits agree on one of them), so no pair within the
    threshold is missed and far fewer than all pairs are compared: a Python loop over the rows, a few
    seconds for ten thousand photos.

    Example:
        >>> h = np.repeat(np.array([[0b1011], [0b1001], [2**40 + 2**50]], dtype=np.uint64), 4, axis=1)
        >>> near_duplicate_groups(h, [0, 1, 2], threshold=1)  # rows 0 and 1 differ in one bit
        [[0, 1]]
    """
    rows = np.asarray(candidates, dtype=np.int64)
    parent = {int(r): int(r) for r in rows}

    def find(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    upright = hashes[rows, 0]
    turned = hashes[rows]  # (n, 4)
    bands = threshold + 1  # pigeonhole: hashes within `threshold` bits agree exactly on at least one band
    edges = [round(64 * b / bands) for b in range(bands + 1)]
    for start, stop in zip(edges, edges[1:]):
        shift, mask = np.uint64(start), np.uint64((1 << (stop - start)) - 1)
        key_up = (upright >> shift) & mask
        buckets: dict[int, list[int]] = {}
        for i, key in enumerate(key_up.tolist()):
            buckets.setdefault(key, []).append(i)
        keys_turned = (turned >> shift) & mask  # (n, 4)
        for turn in range(4):
            for j, key in enumerate(keys_turned[:, turn].tolist()):
                members = buckets.get(key)
                if not members:
                    continue
                others = np.array([i for i in members if i != j], dtype=np.int64)
                if not len(others):
                    continue
                close = others[_popcount(upright[others] ^ turned[j, turn]) <= threshold]
                for i in close.tolist():
                    a, b = find(int(rows[i])), find(int(rows[j]))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for r in parent:
        groups.setdefault(find(r), []).append(r)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def hashable(widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Which images are large enough to hash (native longer side of at least :data:`MIN_SIDE`)."""
    return np.maximum(widths, heights) >= MIN_SIDE


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a ConfigError."""
    from cnnkit.errors import ConfigError

    if mode not in MODES:
        raise ConfigError(f"Unknown near-duplicate handling. Expected one of {MODES}. Received: near_duplicates="
                          f"{mode!r}.", "Set near_duplicates to group (default), drop or off.",
                          params="near_duplicates")
    return mode


__all__ = ["HASHES", "HASH_SIDE", "MIN_SIDE", "MODES", "THRESHOLD", "cached_hashes", "check_mode", "hashable",
           "near_duplicate_groups", "perceptual_hashes"]
