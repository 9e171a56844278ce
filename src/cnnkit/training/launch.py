"""The launch of a data-parallel run: which process, which coordinator, checked before any device is touched.

These settings are fields of :class:`~cnnkit.training.config.TrainConfig`; they describe where a
process runs, not what the run is, so :func:`relaunch` lets a resumed launch bring its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

from cnnkit.errors import ConfigError

MODES = ("data-parallel",)
LAUNCH_FIELDS = ("distribute", "coordinator", "num_processes", "process_id")


class Launch(Protocol):
    """The settings a launch is checked on (a :class:`~cnnkit.training.config.TrainConfig` has them)."""

    distribute: str | None
    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    budget: float | None
    max_minutes: float | None


C = TypeVar("C", bound=Any)


def parse_coordinator(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:1234`` for IPv6) into host and port; raise ConfigError if malformed.

    Example:
        >>> parse_coordinator("10.0.0.1:1234")
        ('10.0.0.1', 1234)
    """
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return host, int(port)
    raise ConfigError(f"Expected coordinator as HOST:PORT with a port in 1-65535. Received: coordinator={address!r}.",
                      "Pass process 0's address and a free port as coordinator (e.g. 10.0.0.1:1234), the same on "
                      "every process.", params="coordinator")


def check_launch(config: Launch) -> None:
    """Validate the data-parallel launch options of ``config`` (no device is touched); raise ConfigError."""
    mode, coordinator, processes, pid = (getattr(config, name) for name in LAUNCH_FIELDS)
    if mode is not None and mode not in MODES:
        raise ConfigError(f"Unknown distribution. Expected one of {MODES}. Received: distribute={mode!r}.",
                          f"Set distribute to {MODES[0]!r}.", params="distribute")
    if mode is None and (coordinator or processes is not None or pid is not None):
        raise ConfigError("Expected distribute='data-parallel' with coordinator, num_processes or process_id. "
                          "Received: distribute=None.", "Set distribute to 'data-parallel'.",
                          params=("distribute", "coordinator", "num_processes", "process_id"))
    if processes is not None and processes < 1:
        raise ConfigError(f"Expected num_processes ≥ 1. Received: num_processes={processes}.",
                          "Pass the number of processes that join the run (one per host, usually).",
                          params="num_processes")
    if (processes or 1) > 1 and not coordinator:
        raise ConfigError(f"Expected a coordinator (HOST:PORT) with num_processes={processes}. "
                          "Received: coordinator=None.",
                          "Pass process 0's address as coordinator (e.g. 10.0.0.1:1234) on every process.",
                          params=("coordinator", "num_processes"))
    if coordinator:
        parse_coordinator(coordinator)
        if processes is None:
            raise ConfigError("Expected num_processes with a coordinator. Received: num_processes=None.",
                              "Pass the number of processes that join the run as num_processes, the same on every "
                              "process.", params="num_processes")
    if (processes or 1) > 1 and pid is None:
        raise ConfigError(f"Expected process_id in [0, {processes}) with num_processes={processes}. "
                          "Received: process_id=None.", "Give each process its own process_id; 0 is the one that "
                          "writes.", params="process_id")
    if pid is not None and not 0 <= pid < (processes or 1):
        raise ConfigError(f"Expected process_id in [0, {processes or 1}). Received: process_id={pid}.",
                          f"Process ids run from 0 to num_processes − 1 ({(processes or 1) - 1}); process 0 is the "
                          "coordinator and the only one that writes the run folder.",
                          params=("process_id", "num_processes"))
    if (processes or 1) > 1 and config.budget:
        raise ConfigError(f"Expected no budget in a multi-process run. Received: budget={config.budget}.",
                          "Each process would measure its own speed and plan other epochs; set epochs instead.",
                          params=("budget", "epochs"))
    if (processes or 1) > 1 and config.max_minutes:
        raise ConfigError("Expected no max_minutes in a multi-process run. "
                          f"Received: max_minutes={config.max_minutes}.",
                          "Each process would stop at its own clock and the others would wait forever; "
                          "use epochs or early_stopping (decided on validation loss, the same everywhere).",
                          params=("max_minutes", "epochs", "early_stopping"))


def relaunch(saved: C, launch: Launch) -> C:
    """The saved config of a run to resume, with this launch's distribution options where it gives them.

    A run's settings come from its ``config.json``; where each process runs is a property of
    the launch (the coordinator's port may change, every process has its own ``--process-id``).
    """
    given = {name: getattr(launch, name) for name in LAUNCH_FIELDS if getattr(launch, name) is not None}
    return dataclasses.replace(saved, **{**given, "process_id": launch.process_id})
