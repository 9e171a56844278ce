"""The ``cnnkit`` command's options: one argparse sub-parser per command.

Options that configure training are made from the fields of :class:`cnnkit.training.config.TrainConfig`
(flag, help and default live there: :func:`add_field_options`), so :mod:`cnnkit.cli` turns them into a
config by name. Nothing here imports Keras.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from pathlib import Path
from typing import NoReturn

from cnnkit import __version__
from cnnkit import audits as audit_defaults
from cnnkit.errors import CnnkitError
from cnnkit.options import add_field_options, spec_of
from cnnkit.training import lr_find
from cnnkit.training.config import TrainConfig

# TrainConfig's options, in the order `cnnkit train --help` lists them.
_TRAIN_OPTIONS = [f.name for f in dataclasses.fields(TrainConfig) if spec_of(f)]


class Parser(argparse.ArgumentParser):
    """argparse with cnnkit's error format: ``Error: …`` and ``Hint: …`` on stderr, exit status 2."""

    commands: dict[str, Parser]  # the top level's: each command's parser, for error hints

    def error(self, message: str, hint: str | None = None) -> NoReturn:
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
    hint = exc.cli_hint or exc.hint
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
    """The options of ``train`` and ``reproduce``: one per :class:`~cnnkit.training.config.TrainConfig` option."""
    add_field_options(p, TrainConfig, [name for name in _TRAIN_OPTIONS if recipe_option or name != "recipe"])
    p.add_argument("--out", type=Path, help="run folder (default runs/<recipe>-<data>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")


def build_parser(help_of: dict[str, str]) -> Parser:
    """The ``cnnkit`` parser; ``help_of`` maps each command to its one-line help."""
    parser = Parser(prog="cnnkit", description="Train, evaluate, explain and deploy image CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    # --debug is accepted after the command too; SUPPRESS keeps the top level's value when it is absent.
    common = Parser(add_help=False)
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
    p.add_argument("recipe", metavar="RECIPE", help="article-000 … article-004")
    p.add_argument("--data", help="dataset instead of the article's own (e.g. an .npz subset for a quick check)")
    add_train_options(p, recipe_option=False)

    p = sub.add_parser("tune", help=help_of["tune"], description=help_of["tune"])
    p.add_argument("data", nargs="?", default="mnist", help="as for `cnnkit train`")
    add_field_options(p, TrainConfig, ["recipe"], help={"recipe": "the recipe to search around (default as for train)"})
    p.add_argument("--trials", type=int, default=20,
                   help="trials the study should hold, all workers together (default 20)")
    p.add_argument("--study", required=True, help="study name, the same for every worker")
    p.add_argument("--storage", required=True, metavar="URL",
                   help="database the workers share: sqlite:///tune.db (one machine) or postgresql://… (several)")
    add_field_options(p, TrainConfig, ["data_source", "epochs", "steps_per_epoch", "train_limit", "test_limit", "seed",
                                       "val_fraction"],
                      help={"val_fraction": "the split every trial is scored on (default %(default)s)"})
    p.add_argument("--out", type=Path, help="run folder for the best trial (default runs/tune-STUDY)")
    p.add_argument("--overwrite", action="store_true", help="rebuild --out from the study's best trial")

    p = sub.add_parser("lr-find", help=help_of["lr-find"], description=help_of["lr-find"])
    p.add_argument("data", nargs="?", default="mnist", help="as for `cnnkit train`")
    add_field_options(p, TrainConfig, ["recipe", "data_source", "seed", "batch_size", "image_size", "color_mode",
                                       "resize", "label_regex", "val_fraction", "test_fraction", "train_per_class",
                                       "train_limit", "near_duplicates", "class_weight", "precision"])
    p.add_argument("--start-lr", type=float, default=lr_find.START_LR, help="first learning rate (default %(default)g)")
    p.add_argument("--end-lr", type=float, default=lr_find.END_LR, help="last learning rate (default %(default)g)")
    p.add_argument("--steps", type=int, metavar="N",
                   help=f"batches, one learning rate each (default {lr_find.DEFAULT_STEPS}, or {lr_find.FEW_EPOCHS} "
                        f"passes over a smaller training split, at least {lr_find.MIN_DEFAULT_STEPS})")
    p.add_argument("--out", type=Path, help=f"folder for {lr_find.FIGURE} and {lr_find.RECORD} "
                                            "(default runs/lr-find-<data>)")

    p = sub.add_parser("audit", help=help_of["audit"], description=help_of["audit"])
    p.add_argument("data", help="a folder of images, a .csv manifest (path,label), an .npz file, or mnist")
    p.add_argument("--folds", type=int, default=audit_defaults.DEFAULT_FOLDS,
                   help="models, each scoring the images the others trained on (default %(default)s)")
    p.add_argument("--budget", type=float, default=audit_defaults.DEFAULT_BUDGET_MINUTES, metavar="MINUTES",
                   help="training time of all folds together (default %(default)g)")
    p.add_argument("--epochs", type=int, help="each fold's epochs, instead of planning them from --budget")
    add_field_options(p, TrainConfig, ["recipe", "seed", "label_regex"],
                      help={"recipe": "the folds' recipe (default: what recipe auto picks, without downloading)"})
    p.add_argument("--rank-by", choices=("margin", "self_confidence"), default="margin",
                   help="order of the likely label errors (default %(default)s: the normalised margin)")
    p.add_argument("--out", type=Path, help="audit folder (default audits/<data>)")

    p = sub.add_parser("relabel", help=help_of["relabel"], description=help_of["relabel"])
    p.add_argument("decisions", nargs="?", type=Path,
                   help="an audit's suspects.csv with its decision column filled in (relabel, remove, keep)")
    p.add_argument("--data", type=Path, help="the audited folder or .csv manifest (default: the audit's, from "
                                             "audit.json beside DECISIONS)")
    p.add_argument("--apply", action="store_true", help="carry the decisions out (without it: a dry run)")
    p.add_argument("--undo", type=Path, metavar="FILE", help="reverse an applied decisions file from its undo file")

    p = sub.add_parser("evaluate", help=help_of["evaluate"])
    p.add_argument("run", type=Path)

    p = sub.add_parser("predict", help=help_of["predict"])
    p.add_argument("run", help="run folder, .keras file, or exported model.json")
    p.add_argument("images", nargs="+", help="image files and folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--no-tta", action="store_true",
                   help="one view per image, even where the model's recipe averages shifted copies "
                        "(test-time augmentation)")
    p.add_argument("--out", type=Path, help="write a CSV (path,label,probability,top_k,error) instead of printing")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: spread the files over Ray actors (pip install 'cnnkit[ray]'); same rows")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="Ray cluster to run on (default: a local loopback one)")
    p.add_argument("--ray-actors", type=int, metavar="N", help="model replicas on Ray (default: one per CPU)")

    p = sub.add_parser("show", help=help_of["show"])
    p.add_argument("data", nargs="?", default="mnist")
    add_field_options(p, TrainConfig, ["data_source"])
    p.add_argument("--out", type=Path, help="PNG file for the sample grid (default runs/samples-<data>.png)")
    p.add_argument("--count", type=int, default=9, help="number of samples in the grid")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--save-images", type=Path, metavar="DIR", help="also write the samples as PNG files")

    show, verify = p, sub.add_parser("verify", help=help_of["verify"])
    verify.add_argument("data", help="a folder of images or a .csv manifest")
    for p in (show, verify):  # both decode a folder as train would
        add_field_options(p, TrainConfig, ["image_size", "resize", "label_regex", "near_duplicates"], help={
            "image_size": "decode size (default: what `cnnkit train` uses, the photo recipe's)",
            "resize": "resize policy (default %(default)s)",
            "label_regex": "class = group 1 of this regex on the file name",
            "near_duplicates": "look for look-alike images (default) or not (off)"})

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
