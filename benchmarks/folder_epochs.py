"""Epoch time over an image folder: first epoch (decode into the cache), later epochs (from the
cache), against an epoch over the same images already in memory.

    .venv/bin/python benchmarks/folder_epochs.py ../shared/datasets/weather [--epochs 3]

The model is the `photo` recipe. Three runs in this process, same model shape, fresh weights each:
  1. cold: an empty pixel cache, so the load decodes every file (timed separately), then epochs
     streamed batch by batch from the cache on disk (LazyImages + BatchStream);
  2. warm: the cache is there (no decoding), epochs streamed from disk again;
  3. in memory: the decoded arrays handed to Keras directly.
Goal (issue 3): epoch 2 from the folder ≤ 1.2 × an in-memory epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from cnnkit.datasets.photos import load_folder
from cnnkit.models import build_model
from cnnkit.presets import get_preset
from cnnkit.training.config import TrainConfig
from cnnkit.training.fit import compile_model
from cnnkit.training.inputs import BatchStream

from common import given_path, save


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def train_epochs(x, y, epochs: int, lazy: bool) -> list[float]:
    preset = get_preset("photo")
    config = TrainConfig(recipe="photo", epochs=epochs).resolve()
    keras.utils.set_random_seed(0)
    model = build_model(preset, num_classes=int(y.max()) + 1)
    compile_model(model, preset, config, steps_per_epoch=int(np.ceil(len(y) / config.batch_size)))
    timer = EpochTimer()
    if lazy:
        model.fit(BatchStream(x, y, config.batch_size, shuffle=True), epochs=epochs, verbose=0, callbacks=[timer])
    else:
        model.fit(x, y, batch_size=config.batch_size, shuffle=True, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cnnkit-epochs-"))
    size = get_preset("photo").input_shape[:2]
    result = {"folder": str(args.folder), "cpus": os.cpu_count()}
    for name in ("cold", "warm"):
        start = time.perf_counter()
        ds = load_folder(args.folder, image_size=size, home=home, in_memory=False)
        result[f"{name}_load_seconds"] = round(time.perf_counter() - start, 2)
        streamed = train_epochs(ds.x_train, ds.y_train, args.epochs, True)
        result[f"{name}_streamed_epochs"] = [round(t, 2) for t in streamed]
        print(name, result, flush=True)
    x = np.asarray(ds.x_train)
    result["in_memory_epochs"] = [round(t, 2) for t in train_epochs(x, ds.y_train, args.epochs, False)]
    in_memory = float(np.median(result["in_memory_epochs"][1:]))
    result["ratio_epoch2_streamed_to_in_memory"] = round(result["warm_streamed_epochs"][1] / in_memory, 3)
    result["train_images"] = len(x)
    print(json.dumps(save("folder_epochs", **result), indent=2))


if __name__ == "__main__":
    main()
