"""The Python API's ``train`` and ``evaluate``: what a notebook holds goes in, a :class:`Run` or an
:class:`~cnnkit.evaluation.Evaluation` comes out.

``cnnkit train DATA --recipe R --epochs 3`` is ``cnnkit.train("DATA", recipe="R", epochs=3)``: every
keyword is a :class:`TrainConfig` field, named as the CLI's option without its dashes. Besides a name
or a path, ``data`` may be a :class:`~cnnkit.datasets.Dataset` or arrays (``(x, y)``, or Keras'
``((x_train, y_train), (x_test, y_test))``), and ``model`` a Keras model to train in place of the
recipe's network.

Running a notebook cell again is safe: the same request on the same data returns the finished run in
``out`` as it is; a changed one asks for ``overwrite=True`` and names what changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit import artifact
from cnnkit.datasets import Dataset
from cnnkit.datasets.given import as_dataset, fingerprint, is_named, source_fingerprint
from cnnkit.errors import ConfigError
from cnnkit.evaluation import evaluate_probabilities
from cnnkit.fileio import write_json
from cnnkit.progress import reporting
from cnnkit.training import run as engine
from cnnkit.training.config import TrainConfig
from cnnkit.training.result import Evaluation, Run
from cnnkit.training.targets import predictor_for, run_dir_of, test_set

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)
SETTINGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("data", "recipe"))


def default_out(recipe: Any, data: str) -> Path:
    """Where a run goes when no ``out`` is given: ``runs/<recipe>-<data>``, as ``cnnkit train`` does."""
    name = recipe.name if hasattr(recipe, "name") else recipe or "default"
    return Path("runs") / f"{name}-{Path(data).name or 'data'}"


def train(data: Any = "mnist", out: str | os.PathLike[str] | None = None, *, recipe: Any = None,
          model: keras.Model | None = None, resume: bool = False, overwrite: bool = False,
          verbose: int | str = "auto", class_names: list[str] | None = None, **settings: Any) -> Run:
    """Train on ``data`` into the run folder ``out``, evaluate on the test set once, and return the :class:`Run`.

    Args:
        data: a dataset name (``"mnist"``), a folder, a ``.csv`` manifest or an ``.npz`` path; a
            :class:`~cnnkit.datasets.Dataset`; arrays ``(x, y)`` (a stratified ``test_fraction`` becomes the
            test set) or ``((x_train, y_train), (x_test, y_test))``; or a whole :class:`TrainConfig`.
        out: the run folder (default ``runs/<recipe>-<data>``).
        recipe: a recipe's name or a :class:`~cnnkit.presets.Preset`; default fast for MNIST, else auto.
        model: a Keras model to train instead of the recipe's network (input ``(None, H, W, C)`` of the
            data, softmax over its classes); the recipe gives the optimizer, schedule and epochs.
        resume, overwrite: continue an interrupted run in ``out``; replace a finished one.
        verbose: 0 silent; 1 Keras' live bar; 2 one line per epoch; "auto" a bar in a terminal or a notebook,
            lines in logs.
        class_names: for arrays: one name per label (default ``"0"``, ``"1"``, ...).
        settings: any :class:`TrainConfig` field: ``epochs``, ``batch_size``, ``learning_rate``, ``seed``, ...

    Example:
        >>> run = cnnkit.train("mnist", recipe="fast", epochs=1)  # doctest: +SKIP
        Test accuracy: 98.61%  balanced: 98.60%  test loss: 0.0451  (1 epoch, 9.8 s training)
    """
    _check_settings(settings)
    if isinstance(data, TrainConfig):
        config, given = dataclasses.replace(data, **settings, **({"recipe": recipe} if recipe else {})), None
    else:
        seed, test_fraction = settings.get("seed", 0), settings.get("test_fraction", 0.2)
        given = None if is_named(data) else as_dataset(data, class_names=class_names, test_fraction=test_fraction,
                                                       seed=seed)
        config = TrainConfig(data=os.fspath(data) if given is None else given.name, recipe=recipe, **settings)
    run_dir = Path(out) if out is not None else default_out(config.recipe, config.data)
    request = _request(config, given, model)
    with reporting(verbose):
        if not (resume or overwrite) and (run_dir / artifact.MODEL).is_file():
            return _same_run(run_dir, request)
        run = engine.train(config, run_dir, resume=resume, overwrite=overwrite, verbose=verbose, dataset=given,
                           model=model, request=request)
        if run.written:
            log.info(run.summary())
    return run


def evaluate(target: Any, data: Any = None, *, write: bool = False) -> Evaluation:
    """Evaluate a model on labelled images; return the metrics with the confusion matrix.

    Args:
        target: a :class:`Run`, a run folder or ``.keras`` file, a :class:`~cnnkit.predictor.Predictor`, or a
            Keras model (then ``data`` must be given, for its class names).
        data: the images to score. ``None``: the run's own test set, loaded as it was for training.
            A name or path, or a :class:`~cnnkit.datasets.Dataset`: its test split. Arrays ``(x, y)``:
            all of them.
        write: rewrite the run folder's evaluation files and ``metrics.json`` (what ``cnnkit evaluate``
            does); by default nothing is written.

    Example:
        >>> cnnkit.evaluate(run).accuracy  # doctest: +SKIP
        0.9861
    """
    run_dir = run_dir_of(target)
    if write and run_dir is None:
        raise ConfigError("Expected a run folder to write into. Received: write=True with a model in memory.",
                          "Pass the run (or its folder), or leave write out.", params=("write", "target"))
    test = test_set(data, run_dir)
    predictor = predictor_for(target, run_dir, test)
    if write and run_dir is not None:  # the CLI's evaluate: the run folder's files and metrics.json, rewritten
        metrics, probs, _ = engine.evaluate_run_model(predictor, test, run_dir)
        write_json(run_dir / artifact.METRICS, {**artifact.read_json(run_dir / artifact.METRICS), **metrics})
    else:
        probs = predictor.predict_proba(test.x_test)
    return Evaluation.of(evaluate_probabilities(test.y_test, probs, predictor.class_names))


def _check_settings(settings: dict[str, Any]) -> None:
    for name in settings:
        if name not in SETTINGS:
            close = difflib.get_close_matches(name, [*SETTINGS, "recipe", "model", "out"], n=1)
            raise ConfigError(f"Unknown setting {name!r}." + (f" Did you mean {close[0]!r}?" if close else ""),
                              "The settings are TrainConfig's fields: see help(cnnkit.TrainConfig).", params=name)


def _request(config: TrainConfig, given: Dataset | None, model: Any) -> dict[str, Any]:
    """What the caller asked for, as plain data: compared when the same cell runs again."""
    data = fingerprint(given) if given is not None else source_fingerprint(config.data)
    return {"config": config.to_dict(), "data": data, "in_memory": given is not None,
            "model": _architecture(model) if model is not None else None}


def _architecture(model: Any) -> str:
    """A digest of a model's layers and their settings, without the names Keras numbers on every build."""
    layers = [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
              for layer in model.layers]
    return hashlib.blake2b(json.dumps(layers, default=str, sort_keys=True).encode(), digest_size=12).hexdigest()


def _same_run(run_dir: Path, request: dict[str, Any]) -> Run:
    """The finished run in ``run_dir`` if it answers ``request``; else say what differs and how to replace it."""
    recorded = artifact.read_json(run_dir / artifact.CONFIG).get("request")
    if recorded == request:
        log.info(f"{run_dir} already holds this run (same settings, same data): returning it. "
                 "Pass overwrite=True to train it again.")
        return Run.open(run_dir)
    differ = _differences(recorded, request) if recorded else "it was trained another way (from the command line?)"
    raise ConfigError(f"The run folder already holds a finished run, trained with other settings: {differ}. "
                      f"Received: out={str(run_dir)!r}.",
                      "Pass overwrite=True to replace it, or choose another out.", params=("overwrite", "out"))


def _differences(recorded: dict[str, Any], request: dict[str, Any]) -> str:
    was, now = recorded.get("config", {}), request["config"]
    changed = [f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in now if was.get(k) != now.get(k)]
    for part in ("data", "model"):
        if recorded.get(part) != request.get(part):
            changed.append(f"another {part}")
    return ", ".join(changed) or "another cnnkit version"
