"""Images per second: cnnkit's training loop vs bare `model.fit`, and batch inference, same model and backend.

Run from the repository root (MNIST is fetched and verified on first use):

    .venv/bin/python benchmarks/throughput.py                          # article-000, article-004, fast
    .venv/bin/python benchmarks/throughput.py --recipes article-004 --images 20000

For each recipe the same architecture (cnnkit's `build_model`) is trained on the same in-memory
MNIST images with the recipe's optimizer and batch size, one warm-up epoch and then `--epochs`
timed epochs, by:
- cnnkit: `cnnkit.training.fit` — its callbacks, per-epoch checkpoint and validation included
  (an epoch is timed from its start to the next epoch's start, or to the end of `fit`);
- bare `model.fit`, Keras' defaults (`jit_compile="auto"`, i.e. XLA on TensorFlow);
- bare `model.fit` with `jit_compile=False`, cnnkit's compile setting.
Each bare run validates on the same validation split, as cnnkit does, so the work per epoch matches.
Inference: `Predictor.predict_proba` vs `model.predict` over the 10,000 test images.
Results go to benchmarks/out/throughput.json; a Markdown table is printed for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, save  # benchmarks/common.py


class EpochTimer:
    """Wall time per epoch, from one epoch's start to the next's (or to the end of ``fit``).

    Everything a training loop does between epochs (validation, checkpoints, history files) is
    inside the window; only the first epoch (tracing, warm-up) is left out by the callers.
    """

    def __init__(self) -> None:
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer.starts.append(time.perf_counter())

        self.starts: list[float] = []
        self.callback = Callback()

    def seconds(self, end: float) -> list[float]:
        marks = [*self.starts, end]
        return [b - a for a, b in zip(marks, marks[1:])]


def data(images: int):
    sys.path.insert(0, str(ROOT / "src"))
    from cnnkit.datasets import load
    from cnnkit.datasets.splits import stratified_split

    mnist = load("mnist")
    keep, _ = stratified_split(mnist.y_train, 1 - images / len(mnist.y_train), 0) if images < 60000 else (
        np.arange(60000), None)
    x, y = mnist.x_train[keep], mnist.y_train[keep]
    train, val = stratified_split(y, 0.1, 0)
    return x[train], y[train], x[val], y[val], mnist.x_test, mnist.y_test


def cnnkit_fit(recipe: str, arrays, epochs: int) -> float:
    from cnnkit.datasets.base import Dataset
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.fit import fit

    x_tr, y_tr, x_val, y_val, x_te, y_te = arrays
    dataset = Dataset(name="mnist", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, x_val=x_val, y_val=y_val,
                      class_names=[str(i) for i in range(10)], color_mode="grayscale")
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        fit(dataset, TrainConfig(recipe=recipe, epochs=epochs + 1, schedule="constant").resolve(), Path(tmp) / "run",
            verbose=0, callbacks=[timer.callback])
        end = time.perf_counter()
    return len(x_tr) / statistics.median(timer.seconds(end)[1:])


def bare_fit(recipe: str, arrays, epochs: int, jit_compile) -> float:
    import keras

    from cnnkit.models import build_model, make_optimizer
    from cnnkit.presets import get_preset

    x_tr, y_tr, x_val, y_val, _, _ = arrays
    preset = get_preset(recipe)
    keras.utils.set_random_seed(0)
    model = build_model(preset)
    model.compile(optimizer=make_optimizer(preset.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    timer = EpochTimer()
    model.fit(x_tr, y_tr, validation_data=(x_val, y_val), batch_size=preset.batch_size, epochs=epochs + 1,
              verbose=0, callbacks=[timer.callback])
    return len(x_tr) / statistics.median(timer.seconds(time.perf_counter())[1:])


def inference(recipe: str, arrays) -> tuple[float, float]:
    import keras

    from cnnkit.artifact import ModelMetadata
    from cnnkit.models import build_model
    from cnnkit.predictor import Predictor

    x_te = arrays[4]
    model = build_model(recipe)
    predictor = Predictor(model, ModelMetadata(class_names=[str(i) for i in range(10)], input_shape=[28, 28, 1],
                                               color_mode="grayscale"))
    rates = []
    for call in (predictor.predict_proba, lambda x: model.predict(x, batch_size=256, verbose=0)):
        call(x_te[:512])  # trace / compile
        start = time.perf_counter()
        call(x_te)
        rates.append(len(x_te) / (time.perf_counter() - start))
    keras.backend.clear_session()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["article-000", "article-004", "fast"])
    parser.add_argument("--images", type=int, default=20000, help="training images (a stratified subset of MNIST)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    args = parser.parse_args()
    arrays = data(args.images)
    rows = []
    for recipe in args.recipes:
        row = {"recipe": recipe,
               "cnnkit": cnnkit_fit(recipe, arrays, args.epochs),
               "bare_default": bare_fit(recipe, arrays, args.epochs, "auto"),
               "bare_no_xla": bare_fit(recipe, arrays, args.epochs, False)}
        row["predictor"], row["model_predict"] = inference(recipe, arrays)
        rows.append({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()})
        print(json.dumps(rows[-1]), flush=True)
    save("throughput", train_images=len(arrays[0]), rows=rows)
    print("| recipe | cnnkit training img/s | bare `model.fit` (defaults) | bare, `jit_compile=False` "
          "| cnnkit / best bare | inference: `Predictor` img/s | `model.predict` img/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        best = max(r["bare_default"], r["bare_no_xla"])
        print(f"| {r['recipe']} | {r['cnnkit']:,.0f} | {r['bare_default']:,.0f} | {r['bare_no_xla']:,.0f} | "
              f"{r['cnnkit'] / best:.2f}× | {r['predictor']:,.0f} | {r['model_predict']:,.0f} |")


if __name__ == "__main__":
    main()
