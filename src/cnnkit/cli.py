"""The ``cnnkit`` command: a thin shell over the Python API.

Each sub-command parses its options, calls one API function and prints the
result. Errors a user can fix print ``Error: …`` and ``Hint: …`` on stderr and
exit non-zero without a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from cnnkit.cli_options import build_parser, parse_args, speak_cli  # light: no Keras until a command runs
from cnnkit.progress import PROGRESS, ConsoleHandler
from cnnkit.training.config import TrainConfig

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[func.__name__.removeprefix("cmd_").replace("_", "-")] = func  # cmd_lr_find: `cnnkit lr-find`
    return func


def _config(args: argparse.Namespace, data: str) -> TrainConfig:
    """The TrainConfig from the parsed options: every option is named after its config field."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"data"}
    return TrainConfig(data=data, **{name: getattr(args, name) for name in names if hasattr(args, name)})


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _print_metrics(result) -> None:
    print(result.summary())


@command
def cmd_train(args: argparse.Namespace) -> int:
    """Train a recipe on a dataset; write the run folder (model, metrics, plots)."""
    from cnnkit.training.api import default_out
    from cnnkit.training.run import train

    out = args.out or default_out(args.recipe, args.data)
    if args.resume and args.out is None:
        from cnnkit.errors import ConfigError
        raise ConfigError("--resume needs the run folder to continue.", "Pass --out RUN_FOLDER.")
    _print_metrics(train(_config(args, args.data), out, resume=args.resume, overwrite=args.overwrite))
    return 0


@command
def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run an article's recipe as published and print its reported number beside ours."""
    from cnnkit.presets import get_preset
    from cnnkit.training.run import train

    preset = get_preset(args.recipe)
    out = args.out or Path("runs") / f"reproduce-{preset.name}"
    result = train(dataclasses.replace(_config(args, args.data or preset.dataset), recipe=preset), out,
                   overwrite=args.overwrite)
    _print_metrics(result)
    ours = (f"cnnkit test accuracy {result.metrics['test_accuracy']:.2%} on the held-out test set "
            f"after {_count(result.metrics['epochs'], 'epoch')} "
            f"in {result.metrics['train_seconds']:.0f} s.")
    if preset.reported:
        r = preset.reported
        print(f"{preset.name}: article reported {r.metric} {r.value:.2%} ({r.note}); {ours}")
    else:
        print(f"{preset.name}: cnnkit's own recipe, not an article's, so there is no reported number to set "
              f"beside ours (benchmarks/RESULTS.md has its measurements); {ours}")
    return 0


@command
def cmd_tune(args: argparse.Namespace) -> int:
    """Search a recipe's hyperparameters with Optuna (several workers may share one study); keep the best run."""
    from cnnkit.training.tune import tune

    out = args.out or Path("runs") / f"tune-{args.study}"
    result = tune(_config(args, args.data), study=args.study, storage=args.storage, trials=args.trials, out=out,
                  overwrite=args.overwrite)
    print(f"Study {result.study!r}: {_count(result.trials, 'trial')}; best #{result.best_trial}, "
          f"validation accuracy {result.best_value:.2%}, {result.best_params}")
    if result.run is not None:
        _print_metrics(result.run)
    return 0


@command
def cmd_lr_find(args: argparse.Namespace) -> int:
    """Learning-rate range test: train briefly at a rising learning rate, plot the loss, suggest a peak rate."""
    from cnnkit.training.lr_find import FIGURE, lr_find

    out = args.out or Path("runs") / f"lr-find-{Path(args.data).name or 'data'}"
    result = lr_find(_config(args, args.data), out, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    print(f"Suggested learning rate: {result.suggestion:.2e} (valley; steepest descent {result.steepest:.2e}): "
          f"train with --lr {result.suggestion:.2g}")
    print(f"Figure: {Path(out) / FIGURE}")
    return 0


@command
def cmd_audit(args: argparse.Namespace) -> int:
    """Find likely wrong labels, strays and conflicting copies: every image scored by a model that never saw it."""
    from cnnkit.audits.api import audit

    result = audit(args.data, args.out, folds=args.folds, budget=args.budget, epochs=args.epochs, recipe=args.recipe,
                   seed=args.seed, rank_by=args.rank_by, label_regex=args.label_regex)
    print(f"Review them in {result.out / 'audit.html'}.")
    return 0


@command
def cmd_relabel(args: argparse.Namespace) -> int:
    """Apply the decisions marked in an audit's suspects.csv (moves, never deletes), or undo them."""
    from cnnkit.audits import relabel
    from cnnkit.errors import ConfigError

    if args.undo is not None:
        lines = relabel.undo(args.undo)
        print("\n".join(lines) if lines else "Nothing to undo.")
        return 0
    if args.decisions is None:
        raise ConfigError("Expected a decisions file (or undo). Received: neither.",
                          "Pass an audit's suspects.csv with its decision column filled in.",
                          cli_hint="Run `cnnkit relabel AUDIT/suspects.csv`, or `cnnkit relabel --undo FILE`.")
    done = (relabel.apply if args.apply else relabel.plan)(args.decisions, args.data)
    print(done)
    if args.apply and done.lines:
        print(f"Applied. Undo with: cnnkit relabel --undo {done.undo_file}")
    elif done.lines:
        print("Dry run: nothing moved. Add --apply to carry it out.")
    return 0


@command
def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a run's model on its test set again."""
    from cnnkit import artifact
    from cnnkit.training.api import evaluate
    from cnnkit.training.result import tta_line

    e = evaluate(args.run, write=True)
    m = artifact.read_json(Path(args.run) / artifact.METRICS)
    print(f"Test accuracy: {e.accuracy:.2%}  balanced: {e.balanced_accuracy:.2%}  test loss: "
          f"{e.loss:.4f}  (n={int(e.confusion.sum())})")
    if tta_line(m):
        print(tta_line(m))
    return 0


@command
def cmd_predict(args: argparse.Namespace) -> int:
    """Predict the class of image files (and folders of them) with a trained model."""
    import cnnkit
    from cnnkit.batch import predict_paths

    if args.engine != "ray" and (args.ray_address or args.ray_actors):
        from cnnkit.errors import ConfigError
        raise ConfigError(f"--ray-address and --ray-actors apply to Ray. Received: engine={args.engine!r}.",
                          "Add --engine ray.")
    progress = args.out is not None and sys.stdout.isatty()  # a live bar, never escape codes in a log
    if args.engine == "ray":
        from cnnkit.batch_ray import predict_paths_ray

        result = predict_paths_ray(args.run, args.images, out=args.out, top_k=args.top_k, address=args.ray_address,
                                   actors=args.ray_actors, progress=progress, tta=not args.no_tta)
    else:
        result = predict_paths(cnnkit.load(args.run, tta=not args.no_tta), args.images, out=args.out, top_k=args.top_k,
                               progress=progress)
    if result.warning():
        print(f"Warning: {result.warning()}", file=sys.stderr)
    if result.out is not None:
        print(f"Wrote {len(result.files)} rows ({result.failed} errors) to {result.out}")
        return 1 if result.failed else 0
    for item in result.files:
        pred = item.prediction
        if pred is None:
            print(f"{item.path}: error: {item.error}", file=sys.stderr)
            continue
        top = ", ".join(f"{label} {p:.1%}" for label, p in pred.top_k)
        print(f"{item.path}: {pred.label} ({pred.probability:.1%})  top-{len(pred.top_k)}: {top}")
    return 1 if result.failed else 0


@command
def cmd_show(args: argparse.Namespace) -> int:
    """Show a dataset: shapes, class counts, and a grid of samples."""
    from cnnkit.dataview import show

    print(show(args.data, out=args.out, source=args.data_source, count=args.count, split=args.split,
               save_images=args.save_images, **_folder_options(args)))
    return 0


@command
def cmd_verify(args: argparse.Namespace) -> int:
    """Report every file of an image folder that cannot be used (and why), without training."""
    from cnnkit.dataview import verify

    report, bad = verify(args.data, **_folder_options(args))
    print(report)
    return 1 if bad else 0


def _folder_options(args: argparse.Namespace) -> dict:
    """Folder options for show/verify: the ones `cnnkit train` would use, so both share the decoded cache."""
    config = _config(args, args.data)
    if not config.is_folder:
        return {}
    from cnnkit.training.auto import folder_options

    return folder_options(config)


@command
def cmd_summary(args: argparse.Namespace) -> int:
    """Print a preset's (or a run's) layers and parameter counts."""
    from cnnkit.dataview import summarize

    print(summarize(args.target))
    return 0


@command
def cmd_backbones(args: argparse.Namespace) -> int:
    """List the pretrained backbones: parameters, input size, cost, ImageNet top-1, and whether their weights are
    here."""
    import json

    from cnnkit.models.weights import list_backbones

    rows = list_backbones()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'backbone':<20} {'params':>11} {'input':>7} {'GFLOPs':>7} {'top-1':>6}  weights here")
    for row in rows:
        print(f"{row['name']:<20} {row['params']:>11,} {row['input_size']:>4}px {row['gflops']:>7.2f} "
              f"{row['imagenet_top1']:>5.1f}%  {'yes' if row['weights_here'] else 'no'}")
    print("GFLOPs: one image at the input size, without the ImageNet classifier (counted by cnnkit); top-1: ImageNet, "
          "as Keras documents it. Weights go in " + str(Path(rows[0]["weights_file"]).parent) + ".")
    return 0


@command
def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's model: json-h5 (the articles' JSON + HDF5 pair), onnx, litert, saved_model."""
    from cnnkit.exporting import export_model

    out = args.out or Path(args.run) / f"export-{args.format}"
    for path in export_model(args.run, out, args.format):
        print(path)
    return 0


@command
def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a model over HTTP (REST + KServe V2 JSON, micro-batched) until SIGTERM."""
    from cnnkit.server.cli import serve

    return serve(args)


@command
def cmd_explain(args: argparse.Namespace) -> int:
    """Explain a network layer by layer (shapes, formulas, parameters, FLOPs), or `conv` step by step."""
    if args.target == "conv":
        from cnnkit.explain.conv import conv_demo

        print(conv_demo())
        return 0
    from cnnkit.explain.table import explain

    print(explain(args.target).to_text())
    return 0


@command
def cmd_inspect(args: argparse.Namespace) -> int:
    """Draw Grad-CAM heatmaps, first-layer filters and feature maps for chosen images."""
    from cnnkit.explain.inspect import inspect

    out = args.out or (args.run if args.run.is_dir() else args.run.parent) / "inspect"
    for path in inspect(args.run, args.images, out, layer=args.layer, target=args.target):
        print(path)
    return 0


@command
def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a run's self-contained report.html (data, model, curves, errors, Grad-CAM, calibration)."""
    from cnnkit.report import build_report

    print(build_report(args.run))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnkit`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["summary", "--list"]:
        argv = ["summary", "list"]
    parser = build_parser({name: (func.__doc__ or "").strip() for name, func in COMMANDS.items()})
    args = parse_args(parser, argv)
    # cnnkit's own notes (data sources, caches) on stderr; training's progress lines (cnnkit.progress) on stdout.
    # Both still reach the root logger's handlers (a caller's, pytest's).
    logger = logging.getLogger("cnnkit")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        notes = ConsoleHandler("stderr")
        notes.addFilter(lambda record: not record.name.startswith(PROGRESS))  # progress has its own
        logger.addHandler(notes)
        for name in PROGRESS:
            logging.getLogger(name).addHandler(ConsoleHandler("stdout"))
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    from cnnkit.errors import CnnkitError

    try:  # Keras (and TensorFlow) load only inside the commands that need them (cnnkit._backend)
        return COMMANDS[args.command](args)
    except CnnkitError as exc:
        if args.debug:
            raise
        message, hint = speak_cli(exc, parser.commands.get(args.command, parser))
        print(f"Error: {message}", file=sys.stderr)
        if hint:
            print(f"Hint: {hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
