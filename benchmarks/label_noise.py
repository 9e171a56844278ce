"""How well `cnnkit audit` finds labels known to be wrong, against today's top losses and chance (issue 31).

    .venv/bin/python benchmarks/label_noise.py /work/shared/datasets/weather --seeds 0 1 2
    .venv/bin/python benchmarks/label_noise.py WEATHER --sets mnist-uniform --seeds 0 --n 2000 --budget 1  # a check

Sets, rebuilt from genuine data under benchmarks/out/label-noise/ (a set's labels flipped by its seed):

- ``mnist-uniform``: the first 10,000 MNIST training digits (cnnkit's checksum-verified loader) as an ``.npz``,
  5 % of the labels moved to another class chosen uniformly;
- ``mnist-pairs``: the same digits, 5 % of all labels flipped between look-alikes (3<->5, 4<->9, 7<->1);
- ``weather-uniform``: the weather photos copied into class folders, 5 % of them filed under another class.

For each set and seed: ``cnnkit audit`` with its defaults (``--seed`` only), in its own process; then, in this
process, today's ranking: one model of the recipe and epochs the audit's folds used, trained on all the images,
the images ranked by its loss on them ("top losses"); and a random ranking. cnnkit's ranking puts the likely
label errors first (the audit's order), then every other image by its normalised margin. Reported for each:
precision and recall at k = the number flipped, and the area under the precision-recall curve (average
precision). Rows go to benchmarks/out/label_noise.json as they come.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import CNNKIT, OUT, given_path, save

SETS = ("mnist-uniform", "mnist-pairs", "weather-uniform")
PAIRS = {3: 5, 5: 3, 4: 9, 9: 4, 7: 1, 1: 7}
NOISE = 0.05
ROOT = OUT / "label-noise"
RESULTS = OUT / "label_noise.json"


def flip_uniform(labels: np.ndarray, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels with :data:`NOISE` of them moved to another class chosen uniformly, and the rows moved."""
    rows = np.sort(rng.choice(len(labels), round(NOISE * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[rows] = (labels[rows] + rng.integers(1, classes, len(rows))) % classes
    return noisy, rows


def flip_pairs(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels with :data:`NOISE` of all of them flipped within the look-alike pairs, and the rows flipped."""
    candidates = np.flatnonzero(np.isin(labels, list(PAIRS)))
    rows = np.sort(rng.choice(candidates, round(NOISE * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[rows] = [PAIRS[int(y)] for y in labels[rows]]
    return noisy, rows


def write_set(name: str, seed: int, n: int, weather: Path) -> tuple[Path, list[str]]:
    """The set's data (an .npz, or a folder) and the names the audit gives its flipped images."""
    rng = np.random.default_rng(1000 + seed)
    target = ROOT / f"{name}-n{n}-seed{seed}"
    if name.startswith("mnist"):
        from cnnkit.datasets import load

        mnist = load("mnist")
        x, y = np.asarray(mnist.x_train[:n]), np.asarray(mnist.y_train[:n]).astype(np.int64)
        noisy, rows = flip_uniform(y, 10, rng) if name == "mnist-uniform" else flip_pairs(y, rng)
        path = target.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        # The audit looks at train and test alike: a few clean test digits (MNIST's own), which it scores too.
        np.savez(path, x_train=x, y_train=noisy, x_test=np.asarray(mnist.x_test[:10]),
                 y_test=np.asarray(mnist.y_test[:10]), class_names=np.array([str(c) for c in range(10)]))
        return path, [f"train[{r}]" for r in rows]
    from cnnkit.datasets.folder import index_folder

    index = index_folder(weather)
    noisy, rows = flip_uniform(index.labels, len(index.class_names), rng)
    shutil.rmtree(target, ignore_errors=True)
    names, moved = [], set(rows.tolist())
    for i, (path, label) in enumerate(zip(index.paths, noisy)):
        folder = target / index.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
        if i in moved:
            names.append(f"{index.class_names[label]}/{path.name}")
    return target, names


def scores(ranking: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """Precision and recall at k = flipped.sum(), and the average precision, of ``ranking`` (most suspect first)."""
    from sklearn.metrics import average_precision_score

    k = int(flipped.sum())
    hits = int(flipped[ranking[:k]].sum())
    score = np.empty(len(ranking))
    score[ranking] = np.arange(len(ranking), 0, -1)  # the first in the ranking scores highest
    return {"precision_at_k": hits / k, "recall_at_k": hits / k, "k": k,
            "average_precision": float(average_precision_score(flipped, score))}


def top_losses(data: Path, record: dict[str, Any], seed: int) -> tuple[np.ndarray, list[str]]:
    """Today's ranking: the loss of one model (the folds' recipe and epochs) trained on every image, most suspect
    first, and the names of the images it ranks."""
    import dataclasses
    import tempfile

    from cnnkit.audits.api import recipe_for
    from cnnkit.audits.labelled import load_labelled
    from cnnkit.datasets import Dataset
    from cnnkit.predictor import Predictor
    from cnnkit.training.config import TrainConfig, metadata_for
    from cnnkit.training.fit import fit

    config = TrainConfig(data=str(data), seed=seed)
    recipe, side, colour, given = recipe_for(config)
    labelled = load_labelled(config, recipe, side, colour, given)
    config = dataclasses.replace(config, recipe=recipe, image_size=side, color_mode=colour,
                                 epochs=int(record["epochs"])).resolve()
    dataset = Dataset("all", labelled.x, labelled.y, labelled.x[:10], labelled.y[:10], labelled.class_names,
                      labelled.color_mode, resize=labelled.resize)  # the test set is not used
    with tempfile.TemporaryDirectory() as scratch:
        fitted = fit(dataset, dataclasses.replace(config, val_fraction=0.01), Path(scratch), verbose=0)
    probs = Predictor(fitted.model, metadata_for(dataset, config), tta=False).predict_proba(labelled.x)
    loss = -np.log(np.clip(probs[np.arange(len(labelled)), labelled.y], 1e-12, 1.0))
    return np.argsort(-loss, kind="stable"), labelled.names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weather", type=given_path, help="the weather photos' folder (article 003)")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=10_000, help="MNIST digits (default %(default)s)")
    parser.add_argument("--budget", type=float, help="the audit's minutes (default: the audit's own default)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else []
    for name in args.sets:
        for seed in args.seeds:
            data, flipped_names = write_set(name, seed, args.n, args.weather)
            out = ROOT / f"audit-{data.stem}"
            command = [str(CNNKIT), "audit", str(data), "--seed", str(seed), "--out", str(out)]
            if args.budget:
                command += ["--budget", str(args.budget)]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            seconds = time.perf_counter() - start
            record = json.loads((out / "audit.json").read_text())
            saved = np.load(out / "oof.npz")
            names = saved["names"].tolist()
            flipped = np.isin(np.array(names), flipped_names)
            issues = [r["path"] for r in _csv(out / "suspects.csv") if r["finding"] == "label"]
            position = {n: i for i, n in enumerate(names)}
            first = [position[n] for n in issues]
            labels, probs = saved["labels"], saved["probs"]
            margin = probs[np.arange(len(labels)), labels] - np.where(
                np.eye(probs.shape[1], dtype=bool)[labels], -np.inf, probs).max(axis=1)
            rest = [i for i in np.argsort(margin, kind="stable") if i not in set(first)]
            ours = np.array(first + rest)
            losses, loss_names = top_losses(data, record, seed)
            theirs = np.array([position[loss_names[i]] for i in losses])
            chance = np.random.default_rng(seed).permutation(len(names))
            row = {"set": name, "n": len(names), "seed": seed, "flipped": int(flipped.sum()),
                   "audit_seconds": round(seconds, 1), "recipe": record["recipe"], "epochs": record["epochs"],
                   "label_issues": record["label_issues"], "out_of_fold_accuracy": record["out_of_fold_accuracy"],
                   "cnnkit": scores(ours, flipped), "top_losses": scores(theirs, flipped),
                   "random": scores(chance, flipped), "budget_arg": args.budget}
            rows = [r for r in rows if (r["set"], r["seed"], r["n"], r.get("budget_arg")) !=
                    (name, seed, row["n"], args.budget)] + [row]
            print(json.dumps(row), flush=True)
            save("label_noise", rows=rows)


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


if __name__ == "__main__":
    sys.exit(main())
