"""Progress lines: library code logs them, ``verbose`` decides whether they show, only the CLI prints.

Training reports what it does (the recipe auto chose, the budget's plan, the data, the class weights,
a resumed epoch) on the ``cnnkit.training`` logger. For the length of a run, :func:`reporting` makes
``verbose`` govern it, as Keras' own ``verbose`` governs its progress bar:

- ``verbose=0``: nothing below a warning is emitted;
- otherwise the lines are emitted at INFO. When neither ``cnnkit.training`` nor ``cnnkit`` has a
  handler of its own (a script, a notebook), one that prints them to standard output, as Keras prints,
  is attached for the run. A caller who wants them elsewhere adds a handler to the ``cnnkit`` logger.

The command line attaches its handlers once (:func:`cnnkit.cli.main`), so what it prints is the same.

Example:
    >>> import logging
    >>> with reporting(0):
    ...     logging.getLogger("cnnkit.training.fit").info("not shown")
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

TRAINING = "cnnkit.training"
PROGRESS = (TRAINING, "cnnkit.audits")  # the loggers whose lines are progress, printed on stdout by the CLI


class ConsoleHandler(logging.StreamHandler):
    """Writes each line, message only, to ``sys.stdout`` or ``sys.stderr`` as it is at the time.

    Notebooks and tests replace those streams after a handler is made; this one follows them.
    """

    def __init__(self, stream: str = "stdout") -> None:
        super().__init__()
        self._name = stream
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> TextIO:
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, value: TextIO) -> None:  # logging.StreamHandler.__init__ sets it; the property wins
        pass


def live() -> bool:
    """Whether progress can redraw in place: a terminal, or a Jupyter kernel (Keras' bar redraws there too)."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


def keras_verbose(verbose: int | str) -> int:
    """Keras' ``verbose`` for ``fit``: ``"auto"`` is a live bar in a terminal or notebook, a line per epoch in logs."""
    return (1 if live() else 2) if verbose == "auto" else int(verbose)


@contextlib.contextmanager
def reporting(verbose: int | str, name: str = TRAINING) -> Iterator[None]:
    """Let ``verbose`` govern the lines of logger ``name`` (one of :data:`PROGRESS`) until the block ends (see the
    module's text)."""
    logger = logging.getLogger(name)
    saved = logger.level, logger.propagate
    added: ConsoleHandler | None = None
    if verbose == 0:
        logger.setLevel(logging.WARNING)
    else:
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        if not (logger.handlers or logging.getLogger("cnnkit").handlers):
            added = ConsoleHandler("stdout")
            logger.addHandler(added)
            logger.propagate = False  # a root handler (logging.basicConfig) would print each line twice
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        if added is not None:
            logger.removeHandler(added)
