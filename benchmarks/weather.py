"""Leak-free accuracy on a photo folder: article 003's recipe vs cnnkit's `photo`, over several seeds.

Run from the repository root:

    .venv/bin/python benchmarks/weather.py ../shared/datasets/weather
    .venv/bin/python benchmarks/weather.py ../shared/datasets/weather --recipes photo --seeds 0 1 2

Both recipes use article 003's protocol without its leak: `--train-per-class 150` (600 training
images), and of the rest a stratified 10 % for validation and the remainder for the test set, which
is touched once, at the end. Byte-identical duplicates are kept in one split only. Each (recipe, seed)
is its own `cnnkit train` process; results go to benchmarks/out/weather.json, and a Markdown table
(mean ± std, min, max) is printed for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py (scripts run from anywhere: sys.path[0] is their folder)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"


def run(folder: Path, recipe: str, seed: int, per_class: int) -> dict:
    run_dir = OUT / f"weather-{recipe}-seed{seed}"
    cmd = [str(ROOT / ".venv" / "bin" / "cnnkit"), "train", str(folder), "--recipe", recipe, "--seed", str(seed),
           "--train-per-class", str(per_class), "--out", str(run_dir), "--overwrite"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{recipe} seed {seed} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {"recipe": recipe, "seed": seed, "test_accuracy": metrics["test_accuracy"],
           "test_loss": metrics["test_loss"], "epochs": metrics["epochs"],
           "train_seconds": metrics["train_seconds"], "wall_seconds": round(wall, 1),
           "train_size": metrics["train_size"], "val_size": metrics["val_size"],
           "test_size": metrics["test_samples"], "val_accuracy": metrics["val_accuracy"]}
    print(json.dumps(row), flush=True)
    return row


def summary(rows: list[dict]) -> str:
    lines = ["| recipe | seeds | test accuracy, mean ± std | min | max | training time per seed (mean, max) |",
             "|---|---|---|---|---|---|"]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        accs = [r["test_accuracy"] for r in rows if r["recipe"] == recipe]
        secs = [r["train_seconds"] for r in rows if r["recipe"] == recipe]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"| {recipe} | {len(accs)} | **{statistics.mean(accs):.2%} ± {std:.2%}** | {min(accs):.2%} | "
                     f"{max(accs):.2%} | {statistics.mean(secs):.0f} s, {max(secs):.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--recipes", nargs="+", default=["article-003", "photo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-per-class", type=int, default=150)
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"Expected a folder of photos. Received: {args.folder} (not a folder).")
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [run(args.folder, recipe, seed, args.train_per_class) for recipe in args.recipes for seed in args.seeds]
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "folder": str(args.folder),
              "train_per_class": args.train_per_class, "rows": rows}
    (OUT / "weather.json").write_text(json.dumps(result, indent=2))
    print(f"\n{result['date']}, {result['machine']}\n")
    print(summary(rows))


if __name__ == "__main__":
    main()
