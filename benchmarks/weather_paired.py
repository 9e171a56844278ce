"""Two recipes compared seed by seed on the same splits, from the JSON files benchmarks/weather.py wrote.

    .venv/bin/python benchmarks/weather_paired.py A.json B.json ... [--recipes auto photo]

Each file holds rows of (recipe, seed, test accuracy); a seed's split is fixed by the seed, so rows of one
seed share their test images whichever file they come from. The same (recipe, seed) in two files is an
error: pass the runs you mean to compare, once each. Prints, per seed, both accuracies and their
difference, then the means, the mean of the differences with its standard error (the standard deviation
of the differences over the square root of the number of seeds), and how many seeds each recipe won.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from common import given_path  # benchmarks/common.py


def load_rows(paths: list[Path]) -> dict[tuple[str, int], float]:
    """``(recipe, seed) -> test accuracy`` over every file; a pair seen twice is refused."""
    found: dict[tuple[str, int], tuple[float, Path]] = {}
    for path in paths:
        for row in json.loads(path.read_text())["rows"]:
            key = (row["recipe"], int(row["seed"]))
            if key in found:
                raise SystemExit(f"{key[0]} seed {key[1]} is in both {found[key][1]} and {path}. "
                                 "Pass each run once.")
            found[key] = (float(row["test_accuracy"]), path)
    return {key: acc for key, (acc, _) in found.items()}


def paired(rows: dict[tuple[str, int], float], first: str, second: str) -> str:
    """A Markdown table of the seeds both recipes ran, and a summary line."""
    seeds = sorted(s for r, s in rows if r == first and (second, s) in rows)
    if not seeds:
        raise SystemExit(f"No seed has both {first} and {second}.")
    diffs = [rows[first, s] - rows[second, s] for s in seeds]
    lines = [f"| seed | {first} | {second} | difference |", "|---|---|---|---|"]
    lines += [f"| {s} | {rows[first, s]:.2%} | {rows[second, s]:.2%} | {d * 100:+.2f} |" for s, d in zip(seeds, diffs)]
    mean_a = statistics.mean(rows[first, s] for s in seeds)
    mean_b = statistics.mean(rows[second, s] for s in seeds)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    lines.append(f"| mean of {len(seeds)} | **{mean_a:.2%}** | **{mean_b:.2%}** | "
                 f"**{statistics.mean(diffs) * 100:+.2f} ± {se * 100:.2f}** (standard error) |")
    wins = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), sum(d == 0 for d in diffs)
    lines.append(f"\n{first} higher on {_seeds(wins[0])}, {second} higher on {_seeds(wins[1])}, "
                 f"level on {_seeds(wins[2])}.")
    return "\n".join(lines)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=given_path)
    parser.add_argument("--recipes", nargs=2, default=["auto", "photo"], metavar=("FIRST", "SECOND"))
    args = parser.parse_args()
    print(paired(load_rows(args.files), *args.recipes))


if __name__ == "__main__":
    main()
