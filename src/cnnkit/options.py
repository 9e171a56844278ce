"""A setting's command-line face, kept in its dataclass field: flag, help, choices, metavar.

A config dataclass (:class:`~cnnkit.training.config.TrainConfig`,
:class:`~cnnkit.server.settings.ServerSettings`) declares each setting once, with its default, and
:func:`option` puts what the command line needs beside it. :func:`add_field_options` turns the
fields into argparse options, so a default and its help are written in one place. Nothing here imports
Keras, and nothing here knows a particular setting.

Example:
    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class Settings:
    ...     epochs: int | None = option(None, "--epochs", help="passes over the data")
    >>> spec_of(fields(Settings)[0]).flags
    ('--epochs',)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """How a field appears on the command line.

    ``help`` may say ``%(default)s``: it becomes the field's default. ``hidden`` flags are accepted
    but not shown (old spellings kept working).
    """

    flags: tuple[str, ...]
    help: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    hidden: tuple[str, ...] = ()


def option(default: Any, *flags: str, help: str | None = None, metavar: str | None = None,  # noqa: A002
           choices: Sequence[str] | None = None, hidden: Sequence[str] = ()) -> Any:
    """A dataclass field with ``default`` whose command-line option is ``flags`` (first: the one shown)."""
    spec = Option(tuple(flags), help, metavar, tuple(choices) if choices is not None else None, tuple(hidden))
    return dataclasses.field(default=default, metadata={"option": spec})


def spec_of(field: dataclasses.Field[Any]) -> Option | None:
    """The :class:`Option` of ``field``, or ``None`` for a setting the command line does not offer."""
    return field.metadata.get("option")


def add_field_options(parser: argparse.ArgumentParser, settings: type, names: Sequence[str] | None = None, *,
                      help: Mapping[str, str] | None = None, keep_defaults: bool = True) -> None:  # noqa: A002
    """One option per field of the dataclass ``settings`` that declares one (:func:`cnnkit.options.option`).

    The flag, help, choices and metavar come from the field's metadata, the default from the field, the
    type from its annotation. ``names`` picks fields (in that order; default: every field with an option);
    ``help`` rewords a field's help for this command; with ``keep_defaults=False`` an option left out is
    ``None`` (so the dataclass keeps its own default), and ``%(default)s`` (or ``%(default)g``) in the help
    still shows the field's.
    """
    types = typing.get_type_hints(settings)
    by_name = {f.name: f for f in dataclasses.fields(settings)}
    for name in names if names is not None else [n for n, f in by_name.items() if spec_of(f)]:
        spec = spec_of(by_name[name])
        if spec is None:
            raise TypeError(f"{settings.__name__}.{name} declares no command-line option.")
        default = by_name[name].default
        text = (help or {}).get(name, spec.help)
        if text is not None and not keep_defaults:  # argparse would show None: show the dataclass's default
            text = text % {"default": default}
        kind = next((t for t in (int, float) if t in typing.get_args(types[name]) or types[name] is t), str)
        parser.add_argument(*spec.flags, dest=name, type=kind, choices=spec.choices, metavar=spec.metavar,
                            default=default if keep_defaults else None, help=text)
        for flag in spec.hidden:  # an old spelling, accepted and not shown
            parser.add_argument(flag, dest=name, type=kind, choices=spec.choices, help=argparse.SUPPRESS)
