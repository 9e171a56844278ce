"""Time to 99 % MNIST test accuracy: cnnkit's `fast` against article 000 (bare Keras, PyTorch) and the strongest peer.

Run from the repository root (MNIST is fetched and verified on first use; the PyTorch baseline needs
`pip install torch==2.13.0+cpu`, which `make bench-deps` installs):

    .venv/bin/python benchmarks/time_to_accuracy.py                    # 5 seeds, all three
    .venv/bin/python benchmarks/time_to_accuracy.py --only cnnkit --seeds 0 1

Protocol, the same for every contender, one process, data in memory as arrays:
- The 60,000 training digits are split once (stratified, `--split-seed`, default 0) into 55,000 for
  training and 5,000 for validation; the 10,000 test digits are used once per run, at the end.
- Every ~1/10 of an epoch the clock pauses and validation accuracy is measured; training stops the
  first time it reaches the target. The time reported is the training wall time up to that point
  (model building, tracing and the first compilation included; the validation checks excluded).
- The test set then confirms: a run counts as a hit only if its test accuracy is ≥ the target too.
  A run that ends its recipe (or `--max-epochs`) without reaching the target is a miss.
- Bare Keras: article 000's model and recipe (Conv64-Conv32-Dense, Adam 1e-3, batch 32) written as a
  user would, with Keras' defaults (`jit_compile="auto"`), inputs scaled in the model.
  PyTorch: the same model, initialisation (Glorot-uniform, zero bias), optimiser and batch size in a
  hand-written loop over pre-converted float tensors, `torch.set_num_threads(os.cpu_count())`.
- The strongest peer: tuomaso/train_mnist_fast's final recipe, written faithfully in PyTorch
  (:func:`run_tuomaso`), as published (1 epoch) and with 2 epochs.

Results go to benchmarks/out/time_to_accuracy.json; a Markdown table is printed for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, save  # benchmarks/common.py

CHECKS_PER_EPOCH = 10


class Watch:
    """Training clock that pauses for validation checks and records when the target was reached."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray, target: float, accuracy_of) -> None:
        self.x_val, self.y_val, self.target, self.accuracy_of = x_val, y_val, target, accuracy_of
        self.start = time.perf_counter()
        self.paused = 0.0
        self.reached: float | None = None
        self.checks: list[tuple[float, float]] = []  # (training seconds, val accuracy)

    def check(self) -> bool:
        """Measure validation accuracy off the clock; True once the target is reached."""
        now = time.perf_counter()
        elapsed = now - self.start - self.paused
        acc = self.accuracy_of(self.x_val, self.y_val)
        self.checks.append((round(elapsed, 3), round(acc, 5)))
        self.paused += time.perf_counter() - now
        if acc >= self.target and self.reached is None:
            self.reached = elapsed
        return self.reached is not None

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused


def load_mnist(split_seed: int = 0):
    sys.path.insert(0, str(ROOT / "src"))
    from cnnkit.datasets import load
    from cnnkit.datasets.splits import stratified_split

    data = load("mnist")
    train, val = stratified_split(data.y_train, 5000 / 60000, split_seed)
    return (data.x_train[train], data.y_train[train], data.x_train[val], data.y_train[val],
            data.x_test, data.y_test)


def keras_accuracy(model):
    def accuracy(x, y):
        probs = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + 1000])) for i in range(0, len(x), 1000)])
        return float((probs.argmax(1) == y).mean())
    return accuracy


def keras_watch_callback(watch: Watch, steps_per_epoch: int):
    import keras

    every = max(1, steps_per_epoch // CHECKS_PER_EPOCH)

    class WatchCallback(keras.callbacks.Callback):
        checked = 0  # tenths of this epoch checked so far

        def on_epoch_begin(self, epoch, logs=None):
            self.checked = 0

        def on_train_batch_end(self, batch, logs=None):
            # With steps_per_execution = N, Keras reports only every Nth batch: check at the first
            # report past each tenth of the epoch.
            if (batch + 1) // every > self.checked:
                self.checked = (batch + 1) // every
                if watch.check():
                    self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if watch.reached is None and watch.check():
                self.model.stop_training = True

    return WatchCallback()


def run_cnnkit(data, seed: int, target: float, recipe: str, max_epochs: int | None) -> dict:
    from cnnkit.datasets.base import Dataset
    from cnnkit.presets import get_preset
    from cnnkit.training.config import TrainConfig
    from cnnkit.training.fit import fit

    x_tr, y_tr, x_val, y_val, x_te, y_te = data
    config = TrainConfig(recipe=recipe, seed=seed, epochs=max_epochs).resolve()
    dataset = Dataset(name="mnist", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, x_val=x_val, y_val=y_val,
                      class_names=[str(i) for i in range(10)], color_mode="grayscale")
    steps = -(-len(x_tr) // config.batch_size)
    holder: dict = {}

    def accuracy(x, y):
        return keras_accuracy(holder["model"])(x, y)

    watch = Watch(x_val, y_val, target, accuracy)
    import keras

    class Hand(keras.callbacks.Callback):  # the model exists only inside fit: this hands it over
        def on_train_begin(self, logs=None):
            holder["model"] = self.model

    with tempfile.TemporaryDirectory() as tmp:
        result = fit(dataset, config, Path(tmp) / "run", verbose=0,
                     callbacks=[Hand(), keras_watch_callback(watch, steps)])
        seconds = watch.reached if watch.reached is not None else watch.seconds()
        test = keras_accuracy(result.model)(x_te, y_te)
    return {"contender": f"cnnkit {recipe}", "seed": seed, "reached": watch.reached is not None,
            "seconds": round(seconds, 2), "test_accuracy": test, "epochs_run": len(result.history.get("loss", [])),
            "checks": watch.checks, "preset_epochs": get_preset(recipe).epochs}


def run_bare_keras(data, seed: int, target: float, max_epochs: int) -> dict:
    import keras
    from keras import layers

    x_tr, y_tr, x_val, y_val, x_te, y_te = data
    keras.utils.set_random_seed(seed)
    watch = Watch(x_val, y_val, target, None)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Rescaling(1 / 255),
        layers.Conv2D(64, 3, activation="relu"), layers.Conv2D(32, 3, activation="relu"),
        layers.Flatten(), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    watch.accuracy_of = keras_accuracy(model)
    steps = -(-len(x_tr) // 32)
    model.fit(x_tr.astype("float32"), y_tr, batch_size=32, epochs=max_epochs, verbose=0,
              callbacks=[keras_watch_callback(watch, steps)])
    seconds = watch.reached if watch.reached is not None else watch.seconds()
    return {"contender": "article-000, bare Keras", "seed": seed, "reached": watch.reached is not None,
            "seconds": round(seconds, 2), "test_accuracy": watch.accuracy_of(x_te, y_te), "checks": watch.checks}


def torch_accuracy(model, to_tensor):
    """Accuracy of a PyTorch ``model`` on uint8 images, in eval mode, 1,000 at a time."""
    import torch

    def accuracy(x, y):
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(to_tensor(x[i:i + 1000])).argmax(1) for i in range(0, len(x), 1000)])
        model.train()
        return float((pred.numpy() == y).mean())
    return accuracy


def run_torch(data, seed: int, target: float, max_epochs: int) -> dict:
    import torch
    from torch import nn

    x_tr, y_tr, x_val, y_val, x_te, y_te = data
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    watch = Watch(x_val, y_val, target, None)
    model = nn.Sequential(nn.Conv2d(1, 64, 3), nn.ReLU(), nn.Conv2d(64, 32, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 24 * 24, 10))
    for module in model:
        if isinstance(module, (nn.Conv2d, nn.Linear)):  # Keras' defaults
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    to_tensor = lambda x: torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)  # noqa: E731
    xt, yt = to_tensor(x_tr), torch.from_numpy(y_tr.astype(np.int64))

    accuracy = torch_accuracy(model, to_tensor)
    watch.accuracy_of = accuracy
    steps = -(-len(xt) // 32)
    every = max(1, steps // CHECKS_PER_EPOCH)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    done = False
    for _ in range(max_epochs):
        order = torch.randperm(len(xt), generator=generator)
        for step in range(steps):
            idx = order[step * 32:(step + 1) * 32]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
            if (step + 1) % every == 0 and watch.check():
                done = True
                break
        if done or watch.check():
            break
    seconds = watch.reached if watch.reached is not None else watch.seconds()
    return {"contender": "article-000, PyTorch loop", "seed": seed, "reached": watch.reached is not None,
            "seconds": round(seconds, 2), "test_accuracy": accuracy(x_te, y_te), "checks": watch.checks}


def run_tuomaso(data, seed: int, target: float, epochs: int) -> dict:
    """The strongest published MNIST speed recipe, tuomaso/train_mnist_fast's final notebook, in PyTorch as written.

    Conv 5x5 1->24, max-pool 2, ReLU, conv 3x3 24->32, max-pool 2, ReLU, linear 800->256, ReLU,
    linear 256->10, log-softmax; PyTorch's default initialisation, no batch norm; Adam (lr 0.01,
    betas 0.7, 0.9) with OneCycleLR (max_lr 0.01, ``cycle_momentum=False`` as the notebook sets it,
    so beta1 stays 0.7; PyTorch's defaults otherwise) stepped every batch; batch 256; inputs
    normalised with mean 0.1307, std 0.3081; the training set shuffled once.
    """
    import torch
    from torch import nn

    x_tr, y_tr, x_val, y_val, x_te, y_te = data
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    watch = Watch(x_val, y_val, target, None)
    model = nn.Sequential(nn.Conv2d(1, 24, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(24, 32, 3), nn.MaxPool2d(2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(800, 256), nn.ReLU(), nn.Linear(256, 10),
                          nn.LogSoftmax(dim=1))
    to_tensor = lambda x: (torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)  # noqa: E731
                           - 0.1307) / 0.3081
    order = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(seed))  # shuffled once
    xt, yt = to_tensor(x_tr)[order], torch.from_numpy(y_tr.astype(np.int64))[order]
    batch = 256
    steps = -(-len(xt) // batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.7, 0.9))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps * epochs,
                                                   cycle_momentum=False)

    accuracy = torch_accuracy(model, to_tensor)
    watch.accuracy_of = accuracy
    every = max(1, steps // CHECKS_PER_EPOCH)
    done = False
    for _ in range(epochs):
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.nll_loss(model(xt[step * batch:(step + 1) * batch]),
                                   yt[step * batch:(step + 1) * batch]).backward()
            optimizer.step()
            schedule.step()
            if (step + 1) % every == 0 and watch.check():
                done = True
                break
        if done or watch.check():
            break
    seconds = watch.reached if watch.reached is not None else watch.seconds()
    return {"contender": f"tuomaso, PyTorch, {epochs} epoch{'s' if epochs > 1 else ''}", "seed": seed,
            "reached": watch.reached is not None, "seconds": round(seconds, 2), "test_accuracy": accuracy(x_te, y_te),
            "checks": watch.checks}


def summary(rows: list[dict], target: float) -> str:
    lines = [f"| contender | hits (val ≥ {target:.1%}, then test ≥ {target:.1%}) | median s | mean s | min s | max s "
             "| test accuracy (mean) | median vs cnnkit |", "|---|---|---|---|---|---|---|---|"]
    medians = {}
    for name in dict.fromkeys(r["contender"] for r in rows):
        mine = [r for r in rows if r["contender"] == name]
        hits = [r for r in mine if r["reached"] and r["test_accuracy"] >= target]
        secs = [r["seconds"] for r in hits]
        # A miss counts as infinitely slow: the median is over all seeds.
        all_secs = sorted(r["seconds"] if r in hits else float("inf") for r in mine)
        medians[name] = statistics.median(all_secs)
        stats = (f"{medians[name]:.1f} | {statistics.mean(secs):.1f} | {min(secs):.1f} | {max(secs):.1f}"
                 if secs else "miss | – | – | –")
        if secs and medians[name] == float("inf"):
            stats = "miss | " + stats.split(" | ", 1)[1]
        lines.append(f"| {name} | {len(hits)}/{len(mine)} | {stats} | "
                     f"{statistics.mean(r['test_accuracy'] for r in mine):.2%} | {{ratio:{name}}} |")
    base = next((m for n, m in medians.items() if n.startswith("cnnkit")), None)
    text = "\n".join(lines)
    for name, median in medians.items():
        ratio = "–" if not base or base == float("inf") or median == float("inf") else f"{median / base:.1f}×"
        if median == float("inf") and base and base != float("inf"):
            ratio = "never reached"
        text = text.replace(f"{{ratio:{name}}}", ratio)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--only", choices=["cnnkit", "keras", "torch", "tuomaso"], nargs="+",
                        default=["cnnkit", "keras", "torch", "tuomaso"])
    parser.add_argument("--baseline-epochs", type=int, default=3, help="article 000 trains 3 epochs")
    parser.add_argument("--max-epochs", type=int, help="override the cnnkit recipe's epochs")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the 55,000 / 5,000 split (0 is the one the recipes were chosen on)")
    args = parser.parse_args()
    data = load_mnist(args.split_seed)
    rows = []
    for seed in args.seeds:
        if "cnnkit" in args.only:
            rows.append(run_cnnkit(data, seed, args.target, args.recipe, args.max_epochs))
        if "keras" in args.only:
            rows.append(run_bare_keras(data, seed, args.target, args.baseline_epochs))
        if "torch" in args.only:
            rows.append(run_torch(data, seed, args.target, args.baseline_epochs))
        if "tuomaso" in args.only:  # the strongest peer, as published (1 epoch) and with a second epoch
            rows.extend(run_tuomaso(data, seed, args.target, epochs) for epochs in (1, 2))
        for row in rows[-(len(args.only) + ("tuomaso" in args.only)):]:
            print(json.dumps({k: v for k, v in row.items() if k != "checks"}), flush=True)
    save("time_to_accuracy", target=args.target, split_seed=args.split_seed, rows=rows)
    print(summary(rows, args.target))


if __name__ == "__main__":
    main()
