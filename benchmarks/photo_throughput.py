"""Photo training throughput: recipe `photo` in cnnkit against the same network in a plain PyTorch loop, one run.

Both train on the same pixels (the weather folder decoded once by cnnkit at `--size`, RGB), batch 32,
Adam at the recipe's rate, for `--epochs` epochs; the first epoch (tracing, warm-up) is left out and
the median of the others is reported as training images/s (the training pass only: cnnkit's
per-epoch validation and checkpoint are timed apart and reported beside it).

- **cnnkit**: `cnnkit.training.fit` with recipe `photo`, as `cnnkit train` runs it (augmentation
  layers in the model, its input feed, its compiled train step), with and without the augmentation.
- **PyTorch**: the same layers (conv 3x3 without bias, batch norm with Keras' epsilon 1e-3 and
  momentum 0.9, ReLU, max-pool: 32-64-128-128, global average pool, dropout 0.3, linear), the
  same augmentation family done on the batch with `torch.nn.functional` (horizontal flip, rotation
  up to ±18° and zoom up to ±10 % each as an affine resample with zero fill, contrast ±10 %), the
  images as a uint8 tensor, `torch.set_num_threads(os.cpu_count())`. torchvision's v2 transforms
  cannot be used here: the only torchvision wheels this machine can install are built against
  PyTorch's CUDA build, and their C++ operators refuse to load beside the CPU build of torch
  (`RuntimeError: operator torchvision::nms does not exist`, benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/photo_throughput.py ../shared/datasets/weather --epochs 4

Results go to benchmarks/out/photo_throughput.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import given_path, save  # benchmarks/common.py


def cnnkit_rows(dataset: Any, epochs: int, augment: bool) -> dict[str, Any]:
    """Train recipe photo with cnnkit's fit; the training pass timed apart from validation and checkpoint."""
    from cnnkit._backend import keras
    from cnnkit.presets import get_preset
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.fit import fit

    preset = get_preset("photo")
    if not augment:  # the same recipe without its augmentation layers
        preset = dataclasses.replace(preset, name="photo-no-augment",
                                     preprocessing={"rescale": preset.preprocessing["rescale"]})
    spans: list[tuple[float, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_test_begin(self, logs=None):  # fit's validation starts: the training pass is over
            spans.append((self.start, time.perf_counter()))

    config = TrainConfig(recipe=preset, epochs=epochs, seed=0, image_size=dataset.input_shape[0]).resolve()
    with tempfile.TemporaryDirectory() as folder:
        result = fit(dataset, config, Path(folder) / "run", verbose=0, callbacks=[Clock()])
    train = [end - start for start, end in spans][1:]
    whole = result.history["epoch_seconds"][1:]
    n = result.images_per_epoch
    return {"contender": f"cnnkit photo{'' if augment else ', no augmentation'}", "images_per_epoch": n,
            "train_images_per_second": round(n / statistics.median(train), 1),
            "epoch_images_per_second": round(n / statistics.median(whole), 1),
            "train_seconds": [round(t, 3) for t in train], "epoch_seconds": [round(t, 3) for t in whole]}


def torch_rows(x: np.ndarray, y: np.ndarray, classes: int, epochs: int, augment: bool) -> dict[str, Any]:
    """The same network and augmentation family in a plain PyTorch loop."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1),
                nn.ReLU()]

    model = nn.Sequential(*block(3, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128),
                          nn.MaxPool2d(2), *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                          nn.Linear(128, classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, eps=1e-7)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # uint8 NCHW, as the model gets bytes
    labels = torch.from_numpy(y.astype(np.int64))

    def resample(batch: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def augmented(batch: torch.Tensor) -> torch.Tensor:
        n = len(batch)
        flip = torch.rand(n) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        batch = resample(batch, (torch.rand(n) * 2 - 1) * 0.05 * 2 * math.pi, torch.ones(n))  # rotation ±18°
        batch = resample(batch, torch.zeros(n), 1 + (torch.rand(n) * 2 - 1) * 0.1)  # zoom ±10 %
        factor = 1 + (torch.rand(n) * 2 - 1) * 0.1  # contrast ±10 %
        mean = batch.mean(dim=(2, 3), keepdim=True)
        return ((batch - mean) * factor[:, None, None, None] + mean).clamp(0, 255)

    seconds = []
    for _ in range(epochs):
        order = torch.randperm(len(images))
        start = time.perf_counter()
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            batch = images[idx].float()
            if augment:
                batch = augmented(batch)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(batch / 255.0), labels[idx]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    train = seconds[1:]
    return {"contender": f"PyTorch loop{'' if augment else ', no augmentation'}", "images_per_epoch": len(images),
            "train_images_per_second": round(len(images) / statistics.median(train), 1),
            "train_seconds": [round(t, 3) for t in train], "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=given_path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    from cnnkit.training.config import TrainConfig, load_data
    from cnnkit.training.fit import split_dataset

    config = TrainConfig(data=str(args.folder.resolve()), recipe="photo", image_size=args.size, seed=0).resolve()
    dataset = load_data(config)
    split = split_dataset(dataset, config)
    rows = []
    for augment in (True, False):
        for row in (cnnkit_rows(dataset, args.epochs, augment),
                    torch_rows(split.x_train, split.y_train, dataset.num_classes, args.epochs, augment)):
            print(row, flush=True)
            rows.append(row)
    ratio = {("augmentation" if a else "no augmentation"): round(
        rows[2 * i]["train_images_per_second"] / rows[2 * i + 1]["train_images_per_second"], 2)
        for i, a in enumerate((True, False))}
    print(f"\ncnnkit / PyTorch, training images/s: {ratio}")
    save("photo_throughput", folder=str(args.folder), size=args.size, epochs=args.epochs, rows=rows, ratio=ratio)


if __name__ == "__main__":
    main()
