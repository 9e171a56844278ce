"""The ``cnnkit`` command's options: one argparse sub-parser per command.

Options that configure training are named after the fields of
:class:`cnnkit.training.config.TrainConfig`, so :mod:`cnnkit.cli` turns them into a config
by name. Nothing here imports Keras.
"""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path
from typing import NoReturn

from cnnkit import __version__
from cnnkit.training.config import SCHEDULES
from cnnkit.errors import CnnkitError


class Parser(argparse.ArgumentParser):
    """argparse with cnnkit's error format: ``Error: …`` and ``Hint: …`` on stderr, exit status 2."""

    def error(self, message: str, hint: str | None = None) -> NoReturn:  # type: ignore[override]
        if hint is None:
            wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
            close = difflib.get_close_matches(wrong[1], re.findall(r"'([^']*)'", wrong[2]), n=1) if wrong else []
            hint = (f"Did you mean {close[0]!r}? " if close else "") + f"Run `{self.prog} --help` to see every option."
        self.exit(2, f"Error: {message[:1].upper()}{message[1:]}.\nHint: {hint}\n")


def _options_of(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]  # noqa: SLF001


# API parameter names whose CLI option has another dest (datasets.load's source is --from).
_ALIASES = {"source": "data_source", "address": "ray_address", "actors": "ray_actors"}


def speak_cli(exc: CnnkitError, parser: argparse.ArgumentParser) -> tuple[str, str | None]:
    """``exc``'s message, and its hint with the parameters it names (``exc.params``) as ``parser``'s flags.

    In the hint a bare name becomes the flag (``epochs`` -> ``--epochs``, ``learning_rate`` -> ``--lr``)
    and ``name=True`` the switch (``overwrite=True`` -> ``--overwrite``). The message, whose
    ``Received: epochs=-1`` names the value as given, stays as it is.
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings}  # noqa: SLF001
    hint = exc.hint
    for param in exc.params:
        action = actions.get(_ALIASES.get(param, param)) or actions.get(param)
        if hint is None or action is None:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            hint = re.sub(rf"(?<![\w.-]){re.escape(param)}=True\b", flag, hint)
        hint = re.sub(rf"(?<![\w.-]){re.escape(param)}(?![\w=])", flag, hint)
    return exc.message, hint


def parse_args(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is a usage error that suggests the nearest real one."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.commands.get(getattr(args, "command", ""), parser)
        unknown = next((item for item in extra if item.startswith("-")), extra[0])
        close = difflib.get_close_matches(unknown.split("=", 1)[0], _options_of(command), n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]}? " if close else ""
        command.error(f"unrecognized arguments: {' '.join(extra)}",
                      f"{hint}Run `{command.prog} --help` to see every option.")
    return args


def add_train_options(p: argparse.ArgumentParser, *, recipe_option: bool = True) -> None:
    """The options of ``train``, ``reproduce``: one per :class:`cnnkit.training.config.TrainConfig` field."""
    if recipe_option:
        p.add_argument("--recipe", "--preset", dest="preset",
                       help="preset name (see `cnnkit summary --list`), or auto; default: fast for MNIST, auto "
                            "(chosen from the data) for folders, manifests and .npz arrays")
    p.add_argument("--from", dest="data_source", metavar="PATH",
                   help="use MNIST files you already have (IDX files or mnist.npz)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", dest="learning_rate", type=float, help="peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without val_loss gain")
    p.add_argument("--max-minutes", type=float, help="time budget: stop at the last epoch that fits")
    p.add_argument("--steps-per-epoch", type=int, metavar="N", help="at most N batches per epoch")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the training set held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, metavar="N", help="train on a stratified subset of N images")
    p.add_argument("--test-limit", type=int, metavar="N", help="evaluate on a stratified subset of N images")
    p.add_argument("--image-size", type=int, metavar="PIXELS", help="image folders: decode size (default: the recipe's)")
    p.add_argument("--resize", choices=["stretch", "crop", "pad"], default="stretch", help="image folders: resize policy")
    p.add_argument("--label-regex", help="image folders: class = group 1 of this regex on the file name")
    p.add_argument("--test-fraction", type=float, default=0.2, help="image folders: share held out for test")
    p.add_argument("--train-per-class", type=int, metavar="N", help="image folders: N training images per class")
    p.add_argument("--color-mode", choices=["grayscale", "rgb"],
                   help="image folders: colour mode to train in (default: the recipe's; auto: the folder's)")
    p.add_argument("--near-duplicates", choices=["group", "drop", "off"], default="group",
                   help="image folders: look-alike images (resized, re-encoded, rotated, cropped copies) are kept in "
                        "one split (group, default), once (drop), or not looked for (off)")
    p.add_argument("--budget", type=float, metavar="MINUTES",
                   help="plan the epochs to fill this much training time (measured on the first steps); "
                        "recipe auto plans 15 minutes unless --epochs is given")
    p.add_argument("--class-weight", default="auto", metavar="auto|none|balanced|NAME=W,...",
                   help="weigh each class's loss: balanced (n / (classes x n_class)), your own weights, none, or "
                        "auto (default: balanced when the largest class has 3x the images of the smallest)")
    p.add_argument("--backbone", metavar="NAME",
                   help="a pretrained network under the head (see `cnnkit backbones`); recipe transfer, at the "
                        "backbone's input size unless --image-size")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH",
                   help="the backbone's weights: imagenet (default; Keras' fetch into $KERAS_HOME/models, hash "
                        "checked), none (random), or a weights file")
    p.add_argument("--fine-tune", type=int, metavar="EPOCHS",
                   help="after the head: train the backbone's top blocks for EPOCHS more epochs (default 0)")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"],
                   help="compute precision while training (default auto: the recipe's, if this CPU has bfloat16 "
                        "in hardware); the saved model computes in float32")
    p.add_argument("--distribute", choices=["data-parallel"],
                   help="train on every device (JAX backend); --batch-size is the global batch")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="data-parallel over processes: process 0's address")
    p.add_argument("--num-processes", type=int, metavar="N", help="data-parallel: processes in the run")
    p.add_argument("--process-id", type=int, metavar="I", help="data-parallel: this process, 0 … N-1 (0 writes)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<preset>-<data>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")


def build_parser(help_of: dict[str, str]) -> argparse.ArgumentParser:
    """The ``cnnkit`` parser; ``help_of`` maps each command to its one-line help."""
    parser = Parser(prog="cnnkit", description="Train, evaluate, explain and deploy image CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    # --debug is accepted after the command too; SUPPRESS keeps the top level's value when it is absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> its parser, for error hints
    add = sub.add_parser
    sub.add_parser = lambda name, **kwargs: add(name, parents=[common], **kwargs)  # type: ignore[method-assign]

    p = sub.add_parser("train", help=help_of["train"], description=help_of["train"])
    p.add_argument("data", nargs="?", default="mnist",
                   help="mnist, an .npz file of arrays, a folder of images, or a .csv manifest (path,label)")
    add_train_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")

    p = sub.add_parser("reproduce", help=help_of["reproduce"], description=help_of["reproduce"])
    p.add_argument("preset", metavar="PRESET", help="article-000 … article-004")
    p.add_argument("--data", help="dataset instead of the article's own (e.g. an .npz subset for a quick check)")
    add_train_options(p, recipe_option=False)

    p = sub.add_parser("tune", help=help_of["tune"], description=help_of["tune"])
    p.add_argument("data", nargs="?", default="mnist", help="as for `cnnkit train`")
    p.add_argument("--recipe", "--preset", dest="preset", help="the preset to search around (default as for train)")
    p.add_argument("--trials", type=int, default=20,
                   help="trials the study should hold, all workers together (default 20)")
    p.add_argument("--study", required=True, help="study name, the same for every worker")
    p.add_argument("--storage", required=True, metavar="URL",
                   help="database the workers share: sqlite:///tune.db (one machine) or postgresql://… (several)")
    p.add_argument("--from", dest="data_source", metavar="PATH")
    for option in ("--epochs", "--steps-per-epoch", "--train-limit", "--test-limit", "--seed"):
        p.add_argument(option, type=int, metavar="N", default=0 if option == "--seed" else None)
    p.add_argument("--val-fraction", type=float, default=0.1, help="the split every trial is scored on")
    p.add_argument("--out", type=Path, help="run folder for the best trial (default runs/tune-STUDY)")
    p.add_argument("--overwrite", action="store_true", help="rebuild --out from the study's best trial")

    p = sub.add_parser("evaluate", help=help_of["evaluate"])
    p.add_argument("run", type=Path)

    p = sub.add_parser("predict", help=help_of["predict"])
    p.add_argument("run", help="run folder, .keras file, or exported model.json")
    p.add_argument("images", nargs="+", help="image files and folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--no-tta", action="store_true",
                   help="one view per image, even where the model's recipe averages shifted copies (test-time augmentation)")
    p.add_argument("--out", type=Path, help="write a CSV (path,label,probability,top_k,error) instead of printing")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: spread the files over Ray actors (pip install 'cnnkit[ray]'); same rows")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="Ray cluster to run on (default: a local loopback one)")
    p.add_argument("--ray-actors", type=int, metavar="N", help="model replicas on Ray (default: one per CPU)")

    p = sub.add_parser("show", help=help_of["show"])
    p.add_argument("data", nargs="?", default="mnist")
    p.add_argument("--from", dest="data_source", metavar="PATH")
    p.add_argument("--out", type=Path, help="PNG file for the sample grid (default runs/samples-<data>.png)")
    p.add_argument("--count", type=int, default=9, help="number of samples in the grid")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--save-images", type=Path, metavar="DIR", help="also write the samples as PNG files")

    for p in (p, sub.add_parser("verify", help=help_of["verify"])):
        if p.prog.endswith("verify"):
            p.add_argument("data", help="a folder of images or a .csv manifest")
        p.add_argument("--image-size", type=int, metavar="PIXELS",
                       help="decode size (default: what `cnnkit train` uses, the photo recipe's)")
        p.add_argument("--resize", choices=["stretch", "crop", "pad"], default="stretch")
        p.add_argument("--label-regex", help="class = group 1 of this regex on the file name")
        p.add_argument("--near-duplicates", choices=["group", "drop", "off"], default="group",
                       help="look for look-alike images (default) or not (off)")

    p = sub.add_parser("backbones", help=help_of["backbones"], description=help_of["backbones"])
    p.add_argument("--json", action="store_true", help="one JSON object per backbone instead of a table")

    p = sub.add_parser("summary", help=help_of["summary"])
    p.add_argument("target", nargs="?", default="list", help="preset name, run folder, or --list")

    p = sub.add_parser("export", help=help_of["export"])
    p.add_argument("run", type=Path)
    p.add_argument("--format", default="json-h5", choices=["json-h5", "onnx", "litert", "saved_model"])
    p.add_argument("--out", type=Path, help="folder (default RUN/export-FORMAT)")

    p = sub.add_parser("explain", help=help_of["explain"], description=help_of["explain"])
    p.add_argument("target", help="`conv` (the arithmetic walk-through), a preset name, a run folder or .keras file")

    p = sub.add_parser("inspect", help=help_of["inspect"], description=help_of["inspect"])
    p.add_argument("run", type=Path, help="run folder or .keras file")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--out", type=Path, help="folder for the figures (default RUN/inspect)")
    p.add_argument("--layer", help="layer for feature maps and Grad-CAM (default: the last convolutional one)")
    p.add_argument("--target", help="class to explain (default: each image's predicted class)")

    p = sub.add_parser("report", help=help_of["report"], description=help_of["report"])
    p.add_argument("run", type=Path)

    p = sub.add_parser("serve", help=help_of["serve"], description=help_of["serve"])
    from cnnkit.server.cli import add_serve_arguments

    add_serve_arguments(p)
    return parser
