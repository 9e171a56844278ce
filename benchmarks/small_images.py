"""Recipe auto against today's `--recipe small` and scikit-learn's SVC, on four small-image folders anyone can rebuild.

    .venv/bin/python benchmarks/small_images.py /work/shared/datasets/weather --seeds 6 7 8
    .venv/bin/python benchmarks/small_images.py WEATHER --folders digits8 weather32 --seeds 6 --budget 2

The folders, written once under benchmarks/out/small-images/ from genuine data (MNIST through cnnkit's
checksum-verified loader, the weather photos through cnnkit's own decoder):

- ``mnist``: MNIST's 70,000 digits as PNG files, ``train/`` and ``test/`` as published;
- ``mnist6k``: the same test set, and 6,000 of the training digits (600 a class, the first of each class
  in MNIST's order), where overfitting bites;
- ``weather32``: the weather photos as 32x32 colour PNGs, one folder a class (small colour photos, where
  flips help); cnnkit carves the test set (20 %) per seed;
- ``digits8``: 2,000 MNIST training digits (200 a class) shrunk to 8x8 with a box filter (tiny images,
  tiny data); the test set is carved per seed.

For each folder and seed, in this order: ``cnnkit train FOLDER --seed S`` (recipe auto, no other option;
``--budget`` here only for quick checks), ``cnnkit train FOLDER --recipe small --seed S``, and SVC (RBF,
scikit-learn's defaults) on the same split: fitted on the training and validation images the CNNs learn
and choose from, scored on the same test images. Each cnnkit run is its own process. Results are kept in
benchmarks/out/small_images.json as they come (a row already there is not run again unless --again), and
the tables are printed for RESULTS.md. The rule the runs are judged by is written to
benchmarks/out/small-images-rule.txt before the first run (--rule).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import OUT, given_path, machine, save, train  # benchmarks/common.py

FOLDERS = ("mnist", "mnist6k", "weather32", "digits8")
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ROOT = OUT / "small-images"
RESULTS = OUT / "small_images.json"


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from cnnkit.images import encode_png

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(pixels))


def _per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` rows of each class, in the data's own order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)]))


def write_folders(weather: Path, names: tuple[str, ...]) -> None:
    """Write each folder of ``names`` not yet under benchmarks/out/small-images (a finished one has a .done file)."""
    from PIL import Image

    from cnnkit.datasets import load
    from cnnkit.images import decode_image

    mnist = None
    for name in names:
        folder = ROOT / name
        if (folder / ".done").is_file():
            continue
        start = time.perf_counter()
        if name in ("mnist", "mnist6k", "digits8"):
            mnist = mnist or load("mnist")
        if name == "mnist":
            for split, x, y in (("train", mnist.x_train, mnist.y_train), ("test", mnist.x_test, mnist.y_test)):
                for i, (pixels, label) in enumerate(zip(x, y)):
                    _write_png(folder / split / f"{NAMES[label]}_{i:05d}.png", pixels)
        elif name == "mnist6k":
            for i in _per_class(mnist.y_train, 600):
                _write_png(folder / "train" / f"{NAMES[mnist.y_train[i]]}_{i:05d}.png", mnist.x_train[i])
            for i, (pixels, label) in enumerate(zip(mnist.x_test, mnist.y_test)):
                _write_png(folder / "test" / f"{NAMES[label]}_{i:05d}.png", pixels)
        elif name == "digits8":
            for i in _per_class(mnist.y_train, 200):
                small = Image.fromarray(mnist.x_train[i][..., 0]).resize((8, 8), Image.Resampling.BOX)
                _write_png(folder / NAMES[mnist.y_train[i]] / f"{i:05d}.png", np.asarray(small)[..., None])
        elif name == "weather32":
            for path in sorted(weather.iterdir()):
                label = path.stem.rstrip("0123456789")
                try:
                    pixels = decode_image(path, size=(32, 32), color_mode="rgb")
                except Exception as exc:  # noqa: BLE001 - the folder's broken files are skipped, as cnnkit does
                    print(f"skipped {path.name}: {exc}")
                    continue
                _write_png(folder / label / f"{path.stem}.png", pixels)
        (folder / ".done").write_text(f"written {time.strftime('%Y-%m-%d %H:%M')}\n")
        print(f"Wrote {name} in {time.perf_counter() - start:.0f} s", flush=True)


def cnnkit_row(name: str, recipe: str, seed: int, budget: float | None) -> dict[str, Any]:
    options = [str(ROOT / name), "--seed", str(seed)]
    if recipe != "auto":
        options += ["--recipe", recipe]
    if budget is not None:
        options += ["--budget", str(budget)]
    trained = train(options, OUT / "small-images-runs" / f"{name}-{recipe}-seed{seed}")
    m, config = trained.metrics, trained.config
    search = config.get("search", {})
    budget_seconds = 60 * float(config["train"]["budget"]) if config["train"].get("budget") else None
    used = m.get("budget_used_seconds", m["train_seconds"])
    return {"folder": name, "model": recipe, "seed": seed, "test_accuracy": m["test_accuracy"],
            "val_accuracy": m["val_accuracy"], "test_size": m["test_samples"], "epochs": m["epochs"],
            "train_seconds": m["train_seconds"], "search_seconds": search.get("seconds"),
            "candidates": len(search.get("leaderboard", [])), "winner": search.get("winner"),
            "winner_values": next((r["values"] for r in search.get("leaderboard", [])
                                   if r["number"] == search.get("winner")), None),
            "reason": search.get("reason"), "budget_seconds": budget_seconds, "budget_used_seconds": used,
            "budget_share": round(used / budget_seconds, 4) if budget_seconds else None,
            "recipe": config["preset"]["name"], "input_shape": config["preset"]["input_shape"],
            "wall_seconds": trained.wall_seconds, "peak_rss_mb": round(trained.peak_rss_mb)}


def svc_row(name: str, seed: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """SVC (RBF, scikit-learn's defaults) fitted on the split's training and validation images, scored on its test set.

    A folder with its own test/ folder has the same split for every seed: its first row is reused.
    """
    from sklearn.svm import SVC

    if (ROOT / name / "test").is_dir():
        for row in rows:
            if row["folder"] == name and row["model"] == "svc":
                return {**row, "seed": seed, "same_as_seed": row.get("same_as_seed", row["seed"])}

    from cnnkit.training.config import TrainConfig, load_data

    dataset = load_data(TrainConfig(data=str(ROOT / name), recipe="small", seed=seed).resolve())
    x = np.asarray(dataset.x_train, dtype=np.float32).reshape(len(dataset.y_train), -1) / 255.0
    y = np.asarray(dataset.y_train)
    x_test = np.asarray(dataset.x_test, dtype=np.float32).reshape(len(dataset.y_test), -1) / 255.0
    start = time.perf_counter()
    svc = SVC().fit(x, y)
    seconds = time.perf_counter() - start
    accuracy = float((svc.predict(x_test) == np.asarray(dataset.y_test)).mean())
    return {"folder": name, "model": "svc", "seed": seed, "test_accuracy": accuracy, "test_size": len(x_test),
            "train_size": len(y), "train_seconds": round(seconds, 1)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| folder | model | seeds | test accuracy, mean ± standard error | per seed | budget used (share) |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["folder"] for r in rows):
        for model in ("auto", "small", "svc"):
            mine = sorted((r for r in rows if r["folder"] == name and r["model"] == model), key=lambda r: r["seed"])
            if not mine:
                continue
            accs = [r["test_accuracy"] for r in mine]
            error = statistics.stdev(accs) / len(accs) ** 0.5 if len(accs) > 1 else 0.0
            shares = [r.get("budget_share") for r in mine if r.get("budget_share") is not None]
            used = ", ".join(f"{s:.0%}" for s in shares) if model == "auto" else ""
            lines.append(f"| {name} | {model} | {len(accs)} | {statistics.mean(accs):.2%} ± {error:.2%} | "
                         f"{', '.join(f'{a:.2%}' for a in accs)} | {used} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weather", type=given_path, help="the weather photos' folder (article 003)")
    parser.add_argument("--folders", nargs="+", choices=FOLDERS, default=list(FOLDERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[6, 7, 8])
    parser.add_argument("--models", nargs="+", choices=("auto", "small", "svc"), default=["auto", "small", "svc"])
    parser.add_argument("--budget", type=float, help="minutes (quick checks only; the benchmark uses the default)")
    parser.add_argument("--again", action="store_true", help="run rows that are already in the results")
    parser.add_argument("--rule", help="write this rule to benchmarks/out/small-images-rule.txt first (once)")
    args = parser.parse_args()
    if args.rule:
        rule = OUT / "small-images-rule.txt"
        if rule.exists():
            raise SystemExit(f"{rule} exists: the rule is written once, before the runs.")
        OUT.mkdir(parents=True, exist_ok=True)
        rule.write_text(f"{time.strftime('%Y-%m-%d %H:%M')}, {machine()}\n{args.rule}\n")
    write_folders(args.weather, tuple(args.folders))
    rows: list[dict[str, Any]] = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else []
    for name in args.folders:
        for seed in args.seeds:
            for model in args.models:
                key = (name, model, seed, args.budget)
                if not args.again and any((r["folder"], r["model"], r["seed"], r.get("budget_arg")) == key
                                          for r in rows):
                    continue
                row = svc_row(name, seed, rows) if model == "svc" else cnnkit_row(name, model, seed, args.budget)
                rows = [r for r in rows if (r["folder"], r["model"], r["seed"], r.get("budget_arg")) != key]
                rows.append({**row, "budget_arg": args.budget})
                print(json.dumps(rows[-1]), flush=True)
                save("small_images", rows=rows)
    print(table([r for r in rows if r.get("budget_arg") == args.budget]))


if __name__ == "__main__":
    main()
