"""Peak memory of training on an image folder: bounded by the cache and the batch, not the dataset.

Generates a folder of 50,000 small PNG photos (10 classes of coloured patterns, 96x96 RGB, so the
decoded dataset is 1.38 GB), then runs `cnnkit train FOLDER --recipe photo` twice in fresh
processes: once streaming from the pixel cache (forced with CNNKIT_IN_MEMORY_MB=0) and once with
the decoded pixels in memory. Both decode every file (into the cache), train a bounded number of
steps, and evaluate on the whole test split. Peak RSS is the child's own (its rusage from wait4).

    .venv/bin/python benchmarks/folder_memory.py [--images 50000] [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import given_path, save, train  # benchmarks/common.py


def make_folder(folder: Path, n: int, size: int = 96, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (classes, 3))
    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % classes
        pixels = rng.integers(0, 60, (size, size, 3)) + palette[c] // 2
        stripe = (np.arange(size) // (4 + c)) % 2 == 0
        pixels[stripe] += 60
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"class{c}" / f"img{i:06d}.png")


def run(folder: Path, run_dir: Path, home: Path, steps: int, streaming: bool) -> dict:
    env = {"CNNKIT_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if streaming:
        env["CNNKIT_IN_MEMORY_MB"] = "0"
    trained = train([str(folder), "--recipe", "photo", "--epochs", "1", "--steps-per-epoch", str(steps)], run_dir,
                    env=env)
    return {"rc": 0, "seconds": trained.wall_seconds, "peak_rss_mb": trained.peak_rss_mb}  # a failed run ends it


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--work", type=given_path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cnnkit-folder-memory-"))
    folder, home = work / "photos", work / "home"
    start = time.time()
    if not folder.exists():
        make_folder(folder, args.images)
    print(f"Folder of {args.images} PNGs ready in {time.time() - start:.0f} s: {folder}", flush=True)
    decoded_mb = args.images * 96 * 96 * 3 / 2**20
    rows = {}
    for streaming in (True, False):  # the first run also builds the pixel cache
        name = "streaming from the pixel cache" if streaming else "decoded pixels in memory"
        rows[name] = run(folder, work / f"run-{int(streaming)}", home, args.steps, streaming)
        print(name, rows[name], flush=True)
    result = save("folder_memory", images=args.images, decoded_dataset_mb=decoded_mb, steps=args.steps, runs=rows)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
