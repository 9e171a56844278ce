"""Transfer learning in two stages, built for a CPU: a head on cached features, then optional fine-tuning.

**Stage 1.** The backbone is frozen, so each image's features never change: they are computed
once (inference mode, no augmentation) and kept in ``$CNNKIT_HOME/feature-cache``, keyed by the
backbone, a hash of its weights as loaded, the input shape and each image's pixels. A second run
on the same images costs a file read. The head (dropout and softmax) then trains on the features,
standardised, in seconds, as Create ML's does; its weights, with the standardisation folded in,
go into the full model.

**Stage 2** (``fine_tune`` epochs, off by default). The top blocks of the backbone (the last
:data:`TOP_FRACTION` of its layers) train with the head at a tenth of the learning rate, on
pixels through the model's augmentation, while every batch-norm layer stays frozen and in
inference mode (keras#9214). Each epoch is checkpointed, as a from-scratch run's are. Under
``--budget`` the clock starts with stage 1, and stage 2's epochs end sooner when what is left of the
budget would not hold them.

The saved model is one ``keras.Sequential``: pixels in, the backbone's preprocessing inside,
probabilities out (:mod:`cnnkit.models.transfer`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit._backend import keras
from cnnkit.datasets.lazy import take_rows
from cnnkit.fileio import atomic_path, cache_home
from cnnkit.models import build_model, inference_model, make_optimizer
from cnnkit.models.backbones import get_backbone
from cnnkit.models.transfer import find_backbone, load_backbone_weights, weights_digest
from cnnkit.models.weights import resolve_weights
from cnnkit.training.balance import class_weights
from cnnkit.training.callbacks import BudgetKeeper, RunRecorder
from cnnkit.training.config import TrainConfig, metadata_for
from cnnkit.training.fit import FitResult, end_schedule_at, split_dataset
from cnnkit.training.inputs import fit_inputs

log = logging.getLogger(__name__)

TOP_FRACTION = 0.2  # stage 2 trains the last fifth of the backbone's layers (its top blocks)
FINE_TUNE_RATE = 0.1  # stage 2's peak learning rate, as a share of the recipe's
FEATURE_BATCH = 32
_CHUNK = 256  # images read (and hashed) at a time: the folder may be on disk


def fit_transfer(dataset: Any, config: TrainConfig, run_dir: Path, *, resume: bool = False,
                 verbose: int | str = 2) -> FitResult:
    """Train ``config``'s backbone recipe on ``dataset`` into ``run_dir``: stage 1, then stage 2 if asked.

    With ``resume=True`` and a checkpoint in ``run_dir`` (a run killed while fine-tuning), stage 2
    goes on after its last completed epoch: model, optimizer, schedule (as the budget left it) and
    history come from the checkpoint. A run killed in stage 1 starts again; its features are cached.
    """
    from cnnkit import artifact

    start = time.perf_counter()  # --budget counts both stages
    preset = config.preset
    backbone = get_backbone(preset.backbone)
    keras.utils.set_random_seed(config.seed)
    split = split_dataset(dataset, config)
    weights, weighting = class_weights(config.class_weight, split.y_train, dataset.class_names)
    checkpoint = run_dir / artifact.CHECKPOINT
    resumed = resume and checkpoint.is_file()
    if resumed:
        model, meta = artifact.load_model(checkpoint, compile=True)
        state = meta.extra.get("training", {})
        history, stages = state.get("history", {}), dict(state.get("stages", {}))
        plan = {"end": int(state.get("end", config.epochs + preset.fine_tune))}
        log.info(f"Resuming {run_dir} after epoch {state.get('epoch', 0)}/{plan['end']} (fine-tuning; the head's "
                 f"{config.epochs} epochs are done).")
        log.info(weighting)
    else:
        if resume:
            log.info(f"No completed fine-tuning epoch to resume from in {run_dir}; starting from stage 1.")
        model = build_model(preset, input_shape=dataset.input_shape, num_classes=dataset.num_classes)
        path = load_weights(model, config)
        log.info(f"Backbone: {backbone.name} ({backbone.params:,} parameters), weights "
                 f"{'random (none)' if path is None else path}.")
        log.info(weighting)
        history, stages = train_head(model, split, config, weights,
                                     cache_key=f"{backbone.name}-{weights_digest(model)}")
        plan = {"end": config.epochs + preset.fine_tune}  # where stage 2 ends; the budget may move it
    # Every checkpoint records where stage 2 ends and what stage 1 measured, for a resumed launch.
    recorder = RunRecorder(run_dir, lambda state: metadata_for(dataset, config, {**state, **plan, "stages": stages}),
                           history)
    left = config.budget * 60 - (time.perf_counter() - start) if config.budget else None
    if resumed:
        run_fine_tune(model, split, config, plan, weights, recorder, verbose)
    elif preset.fine_tune and left is not None and left <= 0:
        log.info(f"The {config.budget:g}-minute budget was spent by stage 1: no fine-tuning.")
    elif preset.fine_tune:
        fine_tune(model, split, config, preset.fine_tune, recorder)
        run_fine_tune(model, split, config, plan, weights, recorder, verbose, budget_seconds=left)
    steps = math.ceil(len(split.x_train) / config.batch_size)
    return FitResult(model, recorder.history, len(split.x_train), len(split.x_val),
                     min(len(split.x_train), steps * config.batch_size), len(recorder.history.get("loss", [])),
                     {**stages, "backbone": backbone.name, "fine_tune_epochs": preset.fine_tune})


def load_weights(model: keras.Model, config: TrainConfig) -> Path | None:
    """Fetch or find ``config.weights`` and put them into ``model``'s backbone; the file used (``None``: random).

    ``cnnkit train`` calls it once before the run folder is touched, so a missing, unverified or
    mismatched file leaves nothing behind.
    """
    backbone = get_backbone(config.preset.backbone)
    path = resolve_weights(backbone, config.weights)
    if path is not None:
        load_backbone_weights(model, backbone, path)
    return path


def train_head(model: keras.Model, split: Any, config: TrainConfig, weights: dict[int, float] | None,
               cache_key: str) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Stage 1: the head on cached features; its weights are copied into ``model``.

    Returns the head's history and what the stage measured (the feature pass, the cache, the head's time).
    """
    extractor = feature_extractor(model)
    start = time.perf_counter()
    x_train, computed = cached_features(extractor, split.x_train, cache_key)
    x_val, computed_val = cached_features(extractor, split.x_val, cache_key)
    feature_seconds = time.perf_counter() - start
    rows = len(x_train) + len(x_val)
    log.info(f"Features: {rows:,} images in {feature_seconds:.1f} s ({computed + computed_val:,} computed, "
             f"{rows - computed - computed_val:,} from the cache).")
    dense, dropout = model.get_layer("probabilities"), [layer for layer in model.layers if
                                                         isinstance(layer, keras.layers.Dropout)]
    head = keras.Sequential([keras.Input((x_train.shape[1],)),
                             *(keras.layers.Dropout(layer.rate) for layer in dropout),
                             keras.layers.Dense(dense.units, activation="softmax")])
    steps = math.ceil(len(x_train) / config.batch_size)
    rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps * config.epochs, alpha=0.0)
    head.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": config.learning_rate}, learning_rate=rate),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    # The head learns on standardised features (each backbone's have their own scale), and the
    # standardisation is folded into its weights afterwards: the saved model needs no extra layer.
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    fitted = head.fit((x_train - mean) / std, split.y_train, validation_data=((x_val - mean) / std, split.y_val),
                      epochs=config.epochs, batch_size=config.batch_size, class_weight=weights, verbose=0, shuffle=True)
    seconds = time.perf_counter() - start
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in head.layers[-1].weights)
    dense.set_weights([kernel / std[:, None], bias - (mean / std) @ kernel])
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    history["epoch_seconds"] = [seconds / config.epochs] * config.epochs
    history["learning_rate"] = [float(rate((epoch + 1) * steps)) for epoch in range(config.epochs)]
    log.info(f"Head: {config.epochs} epochs in {seconds:.1f} s; validation accuracy {history['val_accuracy'][-1]:.4f}.")
    return history, {"feature_seconds": round(feature_seconds, 3), "features_computed": computed + computed_val,
                     "features_cached": rows - computed - computed_val, "head_seconds": round(seconds, 3)}


def feature_extractor(model: keras.Model) -> keras.Model:
    """Pixels to pooled features at inference: the model's own layers up to its backbone (copies; no augmentation)."""
    twin = inference_model(model)  # a throwaway copy: calling its layers again adds nothing to ``model``
    inner = find_backbone(twin)
    x = pixels = keras.Input(tuple(twin.inputs[0].shape[1:]), dtype=twin.inputs[0].dtype)
    for layer in twin.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            x = layer(x, training=False)
            if layer is inner:
                break
    return keras.Model(pixels, x)


def cached_features(extractor: keras.Model, images: Any, key: str) -> tuple[np.ndarray, int]:
    """Features of every image (rows in order), reusing those already cached; also how many were computed."""
    folder = _cache_home() / f"{key}-{'x'.join(str(s) for s in extractor.input_shape[1:])}"
    chunks = [np.arange(s, min(s + _CHUNK, len(images))) for s in range(0, len(images), _CHUNK)]
    keys = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest()
                     for rows in chunks for row in np.ascontiguousarray(take_rows(images, rows))], dtype="U32")
    known_keys, known = _read(folder)
    position = {k: i for i, k in enumerate(known_keys)}
    missing = np.array([i for i, k in enumerate(keys) if k not in position], dtype=np.int64)
    if len(missing):
        fresh = np.concatenate([extractor.predict(take_rows(images, missing[s:s + _CHUNK]), batch_size=FEATURE_BATCH,
                                                  verbose=0) for s in range(0, len(missing), _CHUNK)])
        known_keys = np.concatenate([known_keys, keys[missing]]) if len(known_keys) else keys[missing]
        known = np.concatenate([known, fresh.astype(np.float32)]) if len(known) else fresh.astype(np.float32)
        _write(folder, known_keys, known)
        position = {k: i for i, k in enumerate(known_keys)}
    return known[[position[k] for k in keys]], len(missing)


def _cache_home() -> Path:
    return cache_home() / "feature-cache"


def _read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(folder / "features.npz") as data:
            return data["keys"], data["features"]
    except (OSError, ValueError, KeyError):  # none yet, or a file that is not ours: computed again
        return np.array([]), np.zeros((0, 0), np.float32)


def _write(folder: Path, keys: np.ndarray, features: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "features.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, keys=keys, features=features)


def fine_tune(model: keras.Model, split: Any, config: TrainConfig, epochs: int, recorder: RunRecorder) -> None:
    """Ready stage 2: the top of the backbone and the head trainable, batch norm frozen, a tenth of the rate.

    The schedule spans ``epochs`` epochs from the epochs ``recorder`` holds (the head's);
    :func:`run_fine_tune` trains them.
    """
    backbone = find_backbone(model)
    backbone.trainable = True
    layers = backbone.layers
    first = int(len(layers) * (1 - TOP_FRACTION))
    for index, layer in enumerate(layers):
        # Batch norm frozen is batch norm in inference mode (Keras 3): its statistics stay ImageNet's.
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
    steps = math.ceil(len(split.x_train) / config.batch_size)
    rate = keras.optimizers.schedules.CosineDecay(config.learning_rate * FINE_TUNE_RATE, decay_steps=steps * epochs,
                                                  alpha=0.0)
    model.compile(optimizer=make_optimizer({"name": "adam", "learning_rate": rate}, learning_rate=rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    log.info(f"Fine-tuning: {epochs} epochs of the top {len(layers) - first} of {len(layers)} backbone layers and the "
             f"head ({trainable:,} trainable parameters), batch norm frozen, peak rate "
             f"{config.learning_rate * FINE_TUNE_RATE:g}.")


def run_fine_tune(model: keras.Model, split: Any, config: TrainConfig, plan: dict[str, int],
                  weights: dict[int, float] | None, recorder: RunRecorder, verbose: int | str,
                  budget_seconds: float | None = None) -> None:
    """Stage 2's epochs, from those ``recorder`` holds to ``plan["end"]``, on pixels through the augmentation.

    With ``budget_seconds`` (what stage 1 left of ``--budget``) the epochs are kept inside it: the
    schedule ends sooner when they would not fit (:class:`~cnnkit.training.callbacks.BudgetKeeper`),
    and ``plan["end"]``, which every checkpoint records, moves with it.
    """
    steps = math.ceil(len(split.x_train) / config.batch_size)
    done = len(recorder.history.get("loss", []))
    if done >= plan["end"]:
        return

    def reschedule(end: int) -> None:
        end_schedule_at(model, (end - config.epochs) * steps)
        plan["end"] = end

    keeper = [] if budget_seconds is None else [BudgetKeeper(budget_seconds, plan["end"], plan["end"], reschedule)]
    inputs, feed_callbacks = fit_inputs(split, config, done)
    model.fit(**inputs, epochs=plan["end"], initial_epoch=done, class_weight=weights, verbose=verbose,
              callbacks=[*feed_callbacks, keras.callbacks.TerminateOnNaN(), *keeper, recorder])
