"""XLA on or off for training on the TensorFlow backend: images/s of every preset, both ways, in one run.

Run from the repository root:

    .venv/bin/python benchmarks/xla.py
    .venv/bin/python benchmarks/xla.py --presets fast article-004 --seconds 20

For each preset, cnnkit's own model and optimizer (the preset's precision as `--precision auto` resolves
it on this CPU, its batch size and steps per compiled call) are compiled twice, `jit_compile=False` (what
cnnkit does on TensorFlow) and `jit_compile=True` (XLA), and trained on random uint8 images through
cnnkit's own feed: one warm-up `fit` of a few batches (tracing and compiling), then timed epochs of
about `--seconds` each. The two settings alternate, each measured twice, so a drifting machine
affects both alike; the better of the two measurements counts.

Results go to benchmarks/out/xla.json; a Markdown table is printed for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import save  # benchmarks/common.py

ROOT = Path(__file__).resolve().parent.parent


def images_per_second(preset_name: str, jit: bool, steps: int) -> float:
    from cnnkit._backend import keras
    from cnnkit.models import build_model, make_optimizer, resolve_precision
    from cnnkit.presets import get_preset
    from cnnkit.training import inputs as feed

    preset = get_preset(preset_name)
    keras.utils.set_random_seed(0)
    model = build_model(preset, precision=resolve_precision(None, preset))
    model.compile(optimizer=make_optimizer(preset.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=preset.steps_per_execution, jit_compile=jit)
    rng = np.random.default_rng(0)
    n = steps * preset.batch_size
    x = rng.integers(0, 256, (n, *preset.input_shape), dtype=np.uint8)
    y = rng.integers(0, preset.num_classes, n)
    data = feed.batches(x, y, preset.batch_size, shuffle=True, seed=0)
    model.fit(data.take(4 * preset.steps_per_execution), epochs=1, verbose=0)  # trace and compile
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    return n / (time.perf_counter() - start)


def steps_for(preset_name: str, seconds: float) -> int:
    """Batches that take about ``seconds`` without XLA (from a short probe)."""
    probe = images_per_second(preset_name, False, 8)
    from cnnkit.presets import get_preset

    return max(8, int(seconds * probe / get_preset(preset_name).batch_size))


def main() -> None:
    from cnnkit.presets import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--seconds", type=float, default=12.0, help="length of one timed epoch without XLA")
    args = parser.parse_args()
    rows = []
    for name in args.presets:
        steps = steps_for(name, args.seconds)
        runs = {False: [], True: []}
        for jit in (False, True, False, True):
            runs[jit].append(images_per_second(name, jit, steps))
        row = {"preset": name, "steps": steps, "xla_off": round(max(runs[False]), 1),
               "xla_on": round(max(runs[True]), 1), "runs": {str(k): [round(v, 1) for v in r] for k, r in runs.items()}}
        row["on_vs_off"] = round(row["xla_on"] / row["xla_off"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    save("xla", rows=rows)
    print("| preset | batch | XLA off (img/s) | XLA on (img/s) | on ÷ off |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {PRESETS[r['preset']].batch_size} | {r['xla_off']:,.0f} | {r['xla_on']:,.0f} | "
              f"{r['on_vs_off']:.2f}× |")


if __name__ == "__main__":
    main()
