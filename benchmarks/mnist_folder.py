"""MNIST as a folder of 70,000 PNG files, trained with `cnnkit train FOLDER` and no other option.

The genuine MNIST digits (fetched and verified by cnnkit) are written as flat PNG files with the
class in the name (`train/seven_01234.png`, `test/two_00042.png`), the way a user's own small-image
folder looks. Then `cnnkit train FOLDER --out RUN` runs in a fresh process: recipe auto must keep
them at 28x28x1, plan its epochs inside the default budget, and reach the test accuracy it reaches.
Peak RSS is the child's (getrusage); the folder and the run are written under benchmarks/out.

    .venv/bin/python benchmarks/mnist_folder.py
    .venv/bin/python benchmarks/mnist_folder.py --seed 1 --keep-folder
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from common import OUT, ROOT, save, train  # benchmarks/common.py

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_folder(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from cnnkit.datasets import load
    from cnnkit.images import encode_png

    data = load("mnist")
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for i, (pixels, label) in enumerate(zip(x, y)):
            (folder / split / f"{NAMES[label]}_{i:05d}.png").write_bytes(encode_png(pixels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-folder", action="store_true", help="reuse benchmarks/out/mnist-folder if there")
    args = parser.parse_args()
    folder, run = OUT / "mnist-folder", OUT / f"mnist-folder-run-seed{args.seed}"
    if not (args.keep_folder and (folder / "test").is_dir()):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        write_folder(folder)
        print(f"Wrote 70,000 PNG files in {time.perf_counter() - start:.0f} s", flush=True)
    trained = train([str(folder), "--seed", str(args.seed)], run, echo=4000)
    metrics, config = trained.metrics, trained.config
    from cnnkit.artifact import read_metadata

    row = {"seed": args.seed, "auto": config.get("auto"), "input_shape": read_metadata(run)["input_shape"],
           "data_profile": config.get("data_profile"), "preset": config["train"]["recipe"],
           "epochs": metrics["epochs"], "budget_minutes": config["train"]["budget"], "plan": config.get("budget_plan"),
           "test_accuracy": metrics["test_accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
           "train_seconds": metrics["train_seconds"], "wall_seconds": trained.wall_seconds,
           "peak_rss_mb": round(trained.peak_rss_mb)}
    save(f"mnist_folder_seed{args.seed}", row=row)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
