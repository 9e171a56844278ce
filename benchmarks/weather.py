"""Leak-free accuracy on a photo folder: recipes side by side over several seeds (auto = no option at all).

Run from the repository root:

    .venv/bin/python benchmarks/weather.py ../shared/datasets/weather
    .venv/bin/python benchmarks/weather.py ../shared/datasets/weather --recipes photo --seeds 0 1 2
    .venv/bin/python benchmarks/weather.py ../shared/datasets/weather --recipes auto photo --train-per-class 0

By default the recipes use article 003's protocol without its leak: `--train-per-class 150` (600
training images), and of the rest a stratified 10 % for validation and the remainder for the test
set. `--train-per-class 0` uses cnnkit's default split instead (20 % test, 10 % validation), which
is what `cnnkit train FOLDER --seed S` does. Either way the test set is touched once, at the end,
and byte-identical copies and near-duplicate groups are kept in one split only, so every recipe of
one seed gets the same splits. Each (recipe, seed) is its own `cnnkit train` process; results go to
benchmarks/out/weather.json, and a Markdown table (mean ± std, min, max) is printed for RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from pathlib import Path

from common import OUT, checkout, given_path, save, train  # benchmarks/common.py (sys.path[0] is this script's folder)


def run(folder: Path, label: str, seed: int, per_class: int | None, extra: list[str], src: Path | None) -> dict:
    recipe = label.split("@")[0]  # RECIPE@REVISION: that recipe in the cnnkit of that git revision
    options = [str(folder), "--seed", str(seed), *extra]
    if recipe != "auto":  # auto: the default, no option at all
        options += ["--recipe", recipe]
    if per_class:
        options += ["--train-per-class", str(per_class)]
    trained = train(options, OUT / f"weather-{label.replace('@', '-at-')}-seed{seed}", src=src)
    metrics, config = trained.metrics, trained.config
    row = {"recipe": label, "seed": seed, "test_accuracy": metrics["test_accuracy"],
           "balanced_accuracy": metrics.get("balanced_accuracy"),
           "test_loss": metrics["test_loss"], "epochs": metrics["epochs"],
           "train_seconds": metrics["train_seconds"], "wall_seconds": trained.wall_seconds,
           "train_size": metrics["train_size"], "val_size": metrics["val_size"],
           "test_size": metrics["test_samples"], "val_accuracy": metrics["val_accuracy"],
           "image_size": config["train"].get("image_size"),
           "budget_plan": {k: v for k, v in config.get("budget_plan", {}).items()
                           if k in ("epochs", "epoch_seconds", "replanned")}}
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
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--recipes", nargs="+", default=["article-003", "photo"],
                        help="recipes, auto for no option; RECIPE@REV runs it in git revision REV's cnnkit")
    parser.add_argument("--name", default="weather", help="benchmarks/out/<name>.json")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-per-class", type=int, default=150,
                        help="article 003's protocol; 0: cnnkit's default split (test 20 %%, validation 10 %%)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `cnnkit train` options, last")
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"Expected a folder of photos. Received: {args.folder} (not a folder).")
    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        trees = {label: stack.enter_context(checkout(label.split("@")[1])) for label in args.recipes if "@" in label}
        for seed in args.seeds:
            for label in args.recipes:
                rows.append(run(args.folder, label, seed, args.train_per_class or None, args.extra, trees.get(label)))
                save(args.name, folder=str(args.folder), train_per_class=args.train_per_class, rows=rows)
    print(summary(rows))


if __name__ == "__main__":
    main()
