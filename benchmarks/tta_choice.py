"""Test-time augmentation for a recipe, chosen on validation: trained runs' validation split with and without it.

For each finished run folder, the validation split is carved again exactly as training carved it
(same data, seed and fractions: :func:`cnnkit.training.fit.split_dataset`), and the saved model
predicts it with one view and with the views of ``--tta`` (e.g. ``'{"flip": true}'``). Reported per
run: validation accuracy and log loss, both ways. The test split is not read.

    .venv/bin/python benchmarks/tta_choice.py benchmarks/out/weather-photo-seed0 ... --tta '{"flip": true}'

Results go to benchmarks/out/tta_choice.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from common import given_path, save  # benchmarks/common.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=given_path)
    parser.add_argument("--tta", required=True, help="the spec to try, as JSON")
    parser.add_argument("--data", type=given_path,
                        help="the dataset path, when the runs recorded a relative one from elsewhere")
    args = parser.parse_args()
    from cnnkit.engines import with_tta
    from cnnkit.predictor import Predictor
    from cnnkit.training.config import TrainConfig, load_data
    from cnnkit.training.fit import split_dataset
    from cnnkit.tta import check_spec

    spec = check_spec(json.loads(args.tta))
    rows = []
    for run in args.runs:
        config = TrainConfig.from_run(run)
        if args.data:
            config = dataclasses.replace(config, data=str(args.data))
        split = split_dataset(load_data(config), config)
        predictor = Predictor.from_artifact(run, tta=False)
        row = {"run": str(run), "val_size": len(split.y_val)}
        for name, tta in (("one_view", {}), ("tta", spec)):
            engine = with_tta(predictor.engine, tta)
            probs = np.concatenate([engine(split.x_val[i:i + 64]) for i in range(0, len(split.x_val), 64)])
            row[f"{name}_accuracy"] = float((probs.argmax(1) == split.y_val).mean())
            row[f"{name}_loss"] = float(-np.log(np.clip(probs[np.arange(len(probs)), split.y_val], 1e-7, 1)).mean())
        print(json.dumps(row), flush=True)
        rows.append(row)
    save("tta_choice", tta=spec, runs=rows)


if __name__ == "__main__":
    main()
