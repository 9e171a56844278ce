"""Imbalance: one weather class cut to 10 % of its training images; --class-weight auto against none.

For each seed, cnnkit's own split of the weather folder (20 % test, 10 % validation, near-duplicate
groups kept whole) is written as a pre-split folder of links (`train/ val/ test/`), with the
minority class's *training* images cut to a tenth (seeded); validation and test keep every image,
so its recall is measured on all of its test photos. Both settings train the same folder with
recipe auto, each in its own `cnnkit train` process: `none` plans the epochs and side for the budget,
and `auto` trains the same epochs at the same side, so a pair differs in its class weights alone.

    .venv/bin/python benchmarks/imbalance.py ../shared/datasets/weather --seeds 0 1 2 --budget 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from common import OUT, ROOT, given_path, save, train  # benchmarks/common.py


def presplit(source: Path, seed: int, minority: str, keep: float, target: Path) -> dict[str, int]:
    """Write cnnkit's split of ``source`` as train/val/test links, ``minority``'s training images cut to ``keep``."""
    sys.path.insert(0, str(ROOT / "src"))
    from cnnkit.datasets.folder_splits import split_index
    from cnnkit.datasets.photos import scan_folder

    inspected, decoded = scan_folder(source, image_size=128)
    index, groups = inspected.index, inspected.profile.groups
    usable = np.flatnonzero(decoded.ok)
    position = {int(r): k for k, r in enumerate(usable)}
    kept = dataclasses.replace(index, paths=[index.paths[i] for i in usable], labels=index.labels[usable],
                               presplit=[None] * len(usable), sha256=[index.sha256[i] for i in usable])
    splits = split_index(kept, seed=seed, groups=[[position[i] for i in g if i in position] for g in groups])
    rng = np.random.default_rng(seed)
    shutil.rmtree(target, ignore_errors=True)
    counts = {}
    for part in ("train", "val", "test"):
        rows = getattr(splits, part)
        if part == "train":
            minority_rows = [r for r in rows if kept.class_names[kept.labels[r]] == minority]
            dropped = set(rng.permutation(minority_rows)[int(round(len(minority_rows) * keep)):].tolist())
            rows = [r for r in rows if r not in dropped]
        for r in rows:
            label = kept.class_names[kept.labels[r]]
            link = target / part / label / kept.paths[r].name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(kept.paths[r])
        counts[part] = len(rows)
        counts[f"{part}_{minority}"] = sum(kept.class_names[kept.labels[r]] == minority for r in rows)
    return counts


def weighted(folder: Path, seed: int, weight: str, plan: list[str]) -> dict:
    trained = train([str(folder), "--seed", str(seed), "--class-weight", weight, *plan],
                    OUT / f"imbalance-{weight}-seed{seed}")
    metrics, config = trained.metrics, trained.config["train"]
    recall = {row["class"]: row["recall"] for row in metrics["per_class"]}
    line = next((text for text in trained.stdout.splitlines() if text.startswith("Class weights:")), "")
    return {"seed": seed, "class_weight": weight, "weights": line, "test_accuracy": metrics["test_accuracy"],
            "balanced_accuracy": metrics["balanced_accuracy"], "recall": recall, "epochs": metrics["epochs"],
            "image_size": config["image_size"], "train_seconds": metrics["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--minority", default="rain")
    parser.add_argument("--keep", type=float, default=0.1, help="share of the minority's training images kept")
    parser.add_argument("--budget", type=float, default=5.0, help="minutes of training per run")
    args = parser.parse_args()
    rows, splits = [], {}
    for seed in args.seeds:
        folder = OUT / f"imbalance-folder-seed{seed}"
        splits[seed] = presplit(args.folder.resolve(), seed, args.minority, args.keep, folder)
        print(json.dumps({"seed": seed, **splits[seed]}), flush=True)
        # "none" plans the budget (auto's side and epochs); "auto" trains exactly that, so the pair differs
        # in the weights alone, not in what two clock readings planned.
        rows.append(weighted(folder, seed, "none", ["--budget", str(args.budget)]))
        print(json.dumps(rows[-1]), flush=True)
        same = ["--epochs", str(rows[-1]["epochs"]), "--image-size", str(rows[-1]["image_size"])]
        rows.append(weighted(folder, seed, "auto", same))
        print(json.dumps(rows[-1]), flush=True)
    save("imbalance", minority=args.minority, keep=args.keep, budget=args.budget, splits=splits, rows=rows)
    print(f"| class weight | seeds | balanced accuracy (mean) | {args.minority} recall (mean) | accuracy (mean) |")
    print("|---|---|---|---|---|")
    for weight in ("none", "auto"):
        mine = [r for r in rows if r["class_weight"] == weight]
        print(f"| {weight} | {len(mine)} | {statistics.mean(r['balanced_accuracy'] for r in mine):.2%} | "
              f"{statistics.mean(r['recall'][args.minority] for r in mine):.2%} | "
              f"{statistics.mean(r['test_accuracy'] for r in mine):.2%} |")


if __name__ == "__main__":
    main()
