"""Transfer learning's stage 1 on a photo folder: the feature pass per backbone, its cache, and the head.

For each backbone, `cnnkit train FOLDER --backbone NAME --weights W` runs twice into two run
folders with the same cnnkit home: the first computes every image's features, the second must
find them all in the feature cache. Reported per backbone: the feature pass's images/s (first
run), both feature-pass times and their ratio, the head's training time, and test accuracy.

ImageNet weights cannot be fetched on the machines cnnkit's own benchmarks run on, so the
default is `--weights none` (random weights): the speed figures hold, the accuracy does not say
what ImageNet weights would give. Where the weights are in $KERAS_HOME/models, pass
`--weights imagenet` to measure that too.

    .venv/bin/python benchmarks/transfer.py ../shared/datasets/weather --backbones mobilenet_v3_small efficientnet_v2_b0

Results go to benchmarks/out/transfer.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import OUT, given_path, save, train  # benchmarks/common.py


def run(folder: Path, backbone: str, weights: str, home: Path, name: str, extra: list[str]) -> dict:
    trained = train([str(folder), "--backbone", backbone, "--weights", weights, *extra],
                    OUT / f"transfer-{backbone}-{name}", env={"CNNKIT_HOME": str(home)})
    metrics = trained.metrics
    return {**metrics["transfer"], "test_accuracy": metrics["test_accuracy"], "wall_seconds": trained.wall_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v3_small", "efficientnet_v2_b0"])
    parser.add_argument("--weights", default="none")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `cnnkit train` options, last")
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"Expected a folder of photos. Received: {args.folder} (not a folder).")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnkit-transfer-bench-") as home:
        for backbone in args.backbones:
            first = run(args.folder, backbone, args.weights, Path(home), "first", args.extra)
            second = run(args.folder, backbone, args.weights, Path(home), "second", args.extra)
            row = {"backbone": backbone, "weights": args.weights, "images": first["features_computed"],
                   "feature_images_per_second": round(first["features_computed"] / first["feature_seconds"], 1),
                   "first_feature_seconds": first["feature_seconds"],
                   "second_feature_seconds": second["feature_seconds"],
                   "cache_speedup": round(first["feature_seconds"] / max(second["feature_seconds"], 1e-9), 1),
                   "second_computed": second["features_computed"], "head_seconds": first["head_seconds"],
                   "test_accuracy": first["test_accuracy"], "first_wall_seconds": first["wall_seconds"],
                   "second_wall_seconds": second["wall_seconds"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    save("transfer", folder=str(args.folder), rows=rows)
    print("| backbone | images | feature pass, images/s | first / second pass (s) | speed-up | head (s) | "
          "test accuracy |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['images']:,} | {r['feature_images_per_second']:,.1f} | "
              f"{r['first_feature_seconds']:.1f} / {r['second_feature_seconds']:.2f} | {r['cache_speedup']:.0f}x | "
              f"{r['head_seconds']:.1f} | {r['test_accuracy']:.2%} ({r['weights']}) |")


if __name__ == "__main__":
    main()
