"""Near-duplicates on real photos: how far copies are from their originals, how close distinct photos come.

For 60 weather photos, five kinds of copy are made (resized to half, re-encoded at JPEG quality 60,
saved as PNG, turned a quarter with the EXIF tag turning it back, cropped by 3 % on each side) and
decoded by cnnkit's decoder at the photo recipe's 128 px; the distance (bits of 64, the best of the
four quarter turns) between each copy's perceptual hash and its original's is recorded. The same is
done for every pair of distinct photos in the folder, to see how close unrelated photos come. Last,
`cnnkit verify` on the folder counts the groups it finds at the threshold cnnkit uses.

    .venv/bin/python benchmarks/near_duplicates.py ../shared/datasets/weather
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from common import CNNKIT, ROOT, given_path, save  # benchmarks/common.py

sys.path.insert(0, str(ROOT / "src"))


def copies(path: Path) -> dict[str, bytes]:
    image = Image.open(path).convert("RGB")
    width, height = image.size

    def encoded(img: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    dx, dy = int(width * 0.03), int(height * 0.03)
    return {"resized": encoded(image.resize((width // 2, height // 2)), "JPEG", quality=90),
            "jpeg q60": encoded(image, "JPEG", quality=60), "png": encoded(image, "PNG"),
            "exif-rotated": encoded(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif),
            "cropped 3 %": encoded(image.crop((dx, dy, width - dx, height - dy)), "JPEG", quality=90)}


def distance(a: np.ndarray, b: np.ndarray) -> int:
    """Bits apart: ``a``'s upright hash against the nearest of ``b``'s four turns."""
    return int(min(bin(int(a[0]) ^ int(t)).count("1") for t in b))


def main() -> None:
    from cnnkit.datasets.duplicates import THRESHOLD, perceptual_hashes
    from cnnkit.datasets.folder import index_folder
    from cnnkit.images import decode_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--photos", type=int, default=60)
    args = parser.parse_args()
    index = index_folder(args.folder)
    decode = lambda source: decode_image(source, size=(128, 128), color_mode="rgb")  # noqa: E731
    pixels = np.stack([decode(p) for p in index.paths])
    hashes = perceptual_hashes(pixels)
    rng = np.random.default_rng(0)
    picked = rng.choice(len(index.paths), size=args.photos, replace=False)
    kinds: dict[str, list[int]] = {}
    for i in picked:
        for kind, data in copies(index.paths[i]).items():
            copy_hash = perceptual_hashes(decode(data)[None])[0]
            kinds.setdefault(kind, []).append(distance(copy_hash, hashes[i]))
    n = len(hashes)
    pair_min = np.full(n, 64)
    for i in range(n):
        others = [distance(hashes[i], hashes[j]) for j in range(n) if j != i]
        pair_min[i] = min(others)
    within = int((pair_min <= THRESHOLD).sum())
    verify = subprocess.run([str(CNNKIT), "verify", str(args.folder)], text=True,
                            capture_output=True)
    line = next((text for text in verify.stdout.splitlines() if text.startswith("Near-duplicates:")), "")
    result = save("near_duplicates", threshold=THRESHOLD, copies={k: sorted(v) for k, v in kinds.items()},
                  distinct_nearest=np.percentile(pair_min, [0, 1, 5, 50]).tolist(), distinct_within=within,
                  photos=n, verify=line, verify_groups=verify.stdout.count(" = "))
    print("| copy | distance to its original (bits of 64): median | max | within the threshold |")
    print("|---|---|---|---|")
    for kind, values in kinds.items():
        print(f"| {kind} | {int(np.median(values))} | {max(values)} | {sum(v <= THRESHOLD for v in values)}/"
              f"{len(values)} |")
    print(f"\nDistinct photos ({n}): nearest other photo 0/1/5/50th percentile "
          f"{result['distinct_nearest']} bits; {within} within {THRESHOLD} bits of another.")
    print(f"cnnkit verify: {line}")


if __name__ == "__main__":
    main()
