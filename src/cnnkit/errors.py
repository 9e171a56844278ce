"""The few exceptions cnnkit raises for problems a user can fix.

Every message follows one formula (as in Keras and scikit-learn): what was
wrong, what was received, and how to fix it. The CLI prints ``Error: <message>``
and, when present, ``Hint: <hint>``, then exits non-zero without a traceback
(unless ``--debug``).

Errors speak the Python API's language: a setting is named as the parameter it is
(``epochs``, ``image_size``) and listed in ``params``. The command line maps those
names to its flags in one place (:func:`cnnkit.cli_options.speak_cli`), so the same
error reads "Set epochs to 1 or more" from Python and "Set --epochs to 1 or more" on
the command line.
"""

from __future__ import annotations

import importlib.util


class CnnkitError(Exception):
    """Base class: a problem with the user's input, data, config or files.

    Args:
        message: what was wrong and what was received.
        hint: how to fix it (a setting to change, a file to check, a command to run).
        params: the parameters the message and hint name (a name or a tuple of names).
        cli_hint: the hint as the command line gives it, where it names a command rather than a parameter
            (``hint`` "see cnnkit.PRESETS", ``cli_hint`` "run `cnnkit summary --list`"); default: ``hint``.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, params: str | tuple[str, ...] = (),
                 cli_hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.params = (params,) if isinstance(params, str) else tuple(params)
        self.cli_hint = cli_hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class ConfigError(CnnkitError, ValueError):
    """An unknown preset, a bad option value, an impossible combination."""

    exit_code = 2


class DataError(CnnkitError, ValueError):
    """A dataset that cannot be fetched, verified, decoded or split."""


class ArtifactError(CnnkitError, ValueError):
    """A run folder or model file that is missing, corrupt or unsafe to load."""


class StorageError(CnnkitError, OSError):
    """A file could not be written: no space left, or no permission. Nothing half-written is left behind."""


class EngineError(CnnkitError, RuntimeError):
    """An inference engine (Ray, a worker process) failed while running; the message names the engine and its
    first error line."""

    exit_code = 1  # not a usage error (2): the job itself failed


def require(extra: str, *modules: str, purpose: str) -> None:
    """Raise a ConfigError naming the extra to install when any of ``modules`` is missing (none is imported).

    Args:
        extra: the ``cnnkit[...]`` extra that installs them (``"ray"``, ``"serve"``).
        modules: top-level module names to look for (``"ray"``, ``"pyarrow"``).
        purpose: what needs them, for the message (``"--engine ray"``, ``"cnnkit serve"``).

    Example:
        >>> require("tune", "json", purpose="cnnkit tune")  # present: nothing happens
    """
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # in sys.modules as None: importing it fails, as when it is not installed
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise ConfigError(f"{purpose} needs the optional package {missing[0]!r}, which is not installed. "
                          f"Received: no module named {missing[0]!r}.",
                          f"Install it with: pip install 'cnnkit[{extra}]'")
