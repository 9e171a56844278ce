"""The few exceptions cnnkit raises for problems a user can fix.

Every message follows one formula (as in Keras and scikit-learn): what was
wrong, what was received, and how to fix it. The CLI prints ``Error: <message>``
and, when present, ``Hint: <hint>``, then exits non-zero without a traceback
(unless ``--debug``).
"""

from __future__ import annotations


class CnnkitError(Exception):
    """Base class: a problem with the user's input, data, config or files.

    Args:
        message: what was wrong and what was received.
        hint: how to fix it (an option to pass, a file to check, a command to run).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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
