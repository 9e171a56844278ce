"""What a folder of images holds before any recipe touches it: native sizes, colour modes, class balance.

Each image's size and mode come from its header (Pillow opens files lazily: no pixels are
decoded), upright as EXIF rotation will show it. :func:`profile_images` reads them for a list of
files; :class:`DataProfile` summarises them for ``cnnkit show``, ``cnnkit verify``,
``data_report.txt`` and the report, and is what ``--recipe auto`` chooses from.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow modes by what a user would call them.
_GREY = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image a quarter


def mode_kind(image: Image.Image) -> str:
    """``"grey"``, ``"rgb"``, ``"alpha"`` (any transparency) or ``"palette"`` for an opened image."""
    if image.mode in _ALPHA or (image.mode == "P" and "transparency" in image.info):
        return "alpha"
    if image.mode == "P":
        return "palette"
    return "grey" if image.mode in _GREY else "rgb"


def native(path: str | os.PathLike[str]) -> tuple[int, int, str]:
    """``(width, height, mode kind)`` of one image file as it will be shown (upright); ``(0, 0, "")`` if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION) in _SWAPS_SIDES:
                width, height = height, width
            return width, height, mode_kind(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return 0, 0, ""


@dataclass(eq=False)
class DataProfile:
    """Native sizes and modes of a folder's usable images, its class counts, and its near-duplicate groups.

    Attributes:
        widths, heights: native size per image (upright), in the order of the index's paths; 0 where the
            header could not be read (such a file is left out of every figure here, and the decoder names it).
        modes: mode kind per image (:func:`mode_kind`).
        class_counts: images per class, in class order.
        groups: near-duplicate groups, each a list of indices into the paths (two or more each).
    """

    widths: np.ndarray
    heights: np.ndarray
    modes: list[str]
    class_counts: dict[str, int]
    groups: list[list[int]] = field(default_factory=list)

    @property
    def imbalance_ratio(self) -> float:
        """Images of the largest class over images of the smallest."""
        counts = list(self.class_counts.values())
        return float("inf") if min(counts) == 0 else max(counts) / min(counts)

    @property
    def readable(self) -> np.ndarray:
        """Which images' headers were read."""
        return self.widths > 0

    @property
    def median_size(self) -> tuple[int, int]:
        """Median native ``(height, width)``."""
        ok = self.readable
        return int(np.median(self.heights[ok])), int(np.median(self.widths[ok]))

    @property
    def uniform(self) -> bool:
        """Every image has the same native size."""
        ok = self.readable
        return bool(len(set(zip(self.widths[ok].tolist(), self.heights[ok].tolist()))) <= 1)

    @property
    def colour(self) -> bool:
        """Whether the colour images are the majority (grey stays grey)."""
        counts = Counter(m for m in self.modes if m)
        return counts["grey"] * 2 < sum(counts.values())

    def lines(self) -> list[str]:
        """The profile in a few lines of text (``cnnkit show``, ``verify``, ``data_report.txt``)."""
        ok = self.readable

        def sizes(values: np.ndarray) -> str:
            return f"{int(values[ok].min())} / {int(np.median(values[ok]))} / {int(values[ok].max())}"

        modes = ", ".join(f"{kind} {n}" for kind, n in Counter(m for m in self.modes if m).most_common())
        lines = [f"Native sizes (min / median / max): width {sizes(self.widths)}, height {sizes(self.heights)} px"
                 + (" (all the same)" if self.uniform else ""),
                 f"Colour modes: {modes}",
                 f"Class balance: largest / smallest class = {self.imbalance_ratio:.2f}"]
        if self.groups:
            copies = sum(len(g) for g in self.groups)
            groups = f"{len(self.groups)} group{'s' * (len(self.groups) != 1)}"
            lines.append(f"Near-duplicates: {groups} of look-alike images ({copies} images)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for config.json and the report."""
        ok = self.readable
        return {"width": [int(self.widths[ok].min()), int(np.median(self.widths[ok])), int(self.widths[ok].max())],
                "height": [int(self.heights[ok].min()), int(np.median(self.heights[ok])), int(self.heights[ok].max())],
                "modes": dict(Counter(m for m in self.modes if m)), "class_counts": dict(self.class_counts),
                "imbalance_ratio": round(self.imbalance_ratio, 3), "near_duplicate_groups": len(self.groups)}


def profile_images(paths: Sequence[Path], labels: np.ndarray, class_names: Sequence[str],
                   workers: int = 8) -> DataProfile:
    """Read every image's native size and mode from its header (threads: it is file I/O)."""
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(native, paths))
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return DataProfile(widths=np.array([w for w, _, _ in found], dtype=np.int64),
                       heights=np.array([h for _, h, _ in found], dtype=np.int64),
                       modes=[m for _, _, m in found],
                       class_counts={name: int(n) for name, n in zip(class_names, counts)})
