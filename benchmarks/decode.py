r"""The shared decoder's images/s on a photo folder, against the decoder before JPEG draft scaling, in one run.

Both decode every image of the folder to ``--size`` RGB, from files (the pixel cache's fill and
``cnnkit predict`` on a folder) and from bytes in memory (server uploads), one thread, ``--repeats``
passes each, the best pass kept:

- ``full decode``: what :func:`cnnkit.images.decode_image` did until the JPEG draft change, written
  out with the same Pillow calls (open, every pixel decoded, EXIF rotation, RGB, bilinear resize);
- ``cnnkit``: :func:`cnnkit.images.decode_image` as it is, which lets the JPEG decoder scale by 1/2,
  1/4 or 1/8 while it decodes, when the target is that much smaller.

Also reported: how far apart the two decoders' pixels are (mean absolute difference, 0-255), and,
with ``--runs``, each trained run's validation accuracy on pixels from either decoder (the model
is the same; only the decoding of its validation images changes).

    .venv/bin/python benchmarks/decode.py ../shared/datasets/weather --size 128 \
        --runs benchmarks/out/weather-photo-seed0

Results go to benchmarks/out/decode.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from common import given_path, save  # benchmarks/common.py

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def full_decode(source: Any, size: int) -> np.ndarray:
    """The decoder as it was: every pixel decoded, then EXIF rotation, RGB and a bilinear resize."""
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.load()
    image = ImageOps.exif_transpose(image).convert("RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def best_pass(decode: Callable[[Any], np.ndarray], sources: list[Any], repeats: int) -> float:
    """Images/s of the fastest of ``repeats`` passes over ``sources``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for source in sources:
            decode(source)
        best = min(best, time.perf_counter() - start)
    return len(sources) / best


def validation_accuracy(run: Path, data: Path) -> dict[str, Any]:
    """A trained run's validation accuracy on pixels from today's decoder, beside the one its training recorded.

    The run was trained, and its last epoch validated, on pixels from the decoder before JPEG draft
    scaling; the same seeded split is carved again here from pixels decoded as they are now (the
    pixel cache's key names the decoder's version, so nothing old is reused).
    """
    import json

    import cnnkit
    from cnnkit.training.config import TrainConfig, load_data
    from cnnkit.training.fit import split_dataset

    config = dataclasses.replace(TrainConfig.from_run(run), data=str(data.resolve()))
    split = split_dataset(load_data(config), config)
    now = float((cnnkit.load(run).predict_proba(split.x_val).argmax(1) == split.y_val).mean())
    recorded = json.loads((run / "history.json").read_text())["val_accuracy"][-1]
    return {"run": str(run), "val_size": int(len(split.y_val)), "full_decode": round(recorded, 4),
            "cnnkit": round(now, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=given_path, nargs="*", default=[], help="trained runs on this folder")
    args = parser.parse_args()
    from cnnkit.images import decode_image

    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    readable = []
    for path in files:
        try:
            full_decode(path, args.size)
            readable.append(path)
        except (OSError, ValueError):  # the folder's unreadable files are left out of both
            pass
    blobs = [path.read_bytes() for path in readable]
    ours = {"cnnkit": lambda s: decode_image(s, size=(args.size, args.size)),
            "full decode": lambda s: full_decode(s, args.size)}
    rows = {}
    for source_kind, sources in (("files", readable), ("bytes", blobs)):
        for name, decode in ours.items():
            rows[f"{name}, {source_kind}"] = round(best_pass(decode, sources, args.repeats), 1)
            print(f"{name:12s} from {source_kind}: {rows[f'{name}, {source_kind}']:8.1f} images/s", flush=True)
    diffs = [float(np.abs(ours["cnnkit"](b).astype(int) - ours["full decode"](b).astype(int)).mean()) for b in blobs]
    speedup = {kind: round(rows[f"cnnkit, {kind}"] / rows[f"full decode, {kind}"], 2) for kind in ("files", "bytes")}
    print(f"speed-up: {speedup}; pixels apart: mean {np.mean(diffs):.3f}, max {np.max(diffs):.3f} (of 255) "
          f"over {len(blobs)} images")
    accuracy = [validation_accuracy(run, args.folder) for run in args.runs]
    for row in accuracy:
        print(f"{row['run']}: validation accuracy {row['full_decode']:.4f} (as trained, full decode) -> "
              f"{row['cnnkit']:.4f} (today's decoder), {row['val_size']} images", flush=True)
    save("decode", folder=str(args.folder), size=args.size, images=len(readable), images_per_second=rows,
         speedup=speedup, mean_abs_pixel_difference=round(float(np.mean(diffs)), 4),
         max_image_mean_abs_difference=round(float(np.max(diffs)), 4), validation=accuracy)


if __name__ == "__main__":
    main()
