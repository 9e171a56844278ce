"""Data-parallel training with ``keras.distribution`` on the JAX backend: one model, every device.

``cnnkit train … --distribute data-parallel`` trains on all devices of all processes
(``keras.distribution.DataParallel``); ``--coordinator HOST:PORT --num-processes N
--process-id I`` first joins N processes, on one host or many, into one run
(``jax.distributed.initialize``, before any device is used).

What a data-parallel run computes is what a single-device run with the same options computes:

- ``--batch-size`` is the **global** batch: split evenly across all devices of all processes,
  so it must be divisible by the device count. The gradient is the mean over the global
  batch, and batch normalisation takes its statistics over the global batch.
- ``--lr`` is the learning rate for that global batch, unchanged: adding devices does not
  change the optimisation, only how fast each step runs.
- Data: every process loads the dataset (and the same validation split) and, each epoch,
  draws the same permutation, seeded by ``(--seed, epoch)``. Global batch *k* is positions
  ``k·B … (k+1)·B`` of it; process *i* of *N* feeds the *i*-th of *N* equal, contiguous
  shares of every global batch (``B/N`` rows), and reads only those rows (image folders
  left on disk included). The permutation depends only on seed and epoch, so ``--resume``
  continues with the batches an uninterrupted run would have used. A last partial batch
  is cut to a multiple of the device count (at most devices − 1 images per epoch are
  skipped, different ones each epoch).
- Validation runs the same way, unshuffled, inside the same global computation, so every
  process gets the same validation metrics. After training every process copies the
  (replicated) weights into a local model and evaluates the whole test set itself: same
  weights, same data, same test metrics.
- Only process 0 writes the run folder (``model.keras``, metrics, report, checkpoints);
  the others write nothing. ``--resume`` needs the run folder readable by every process
  (a shared file system) since each loads the checkpoint.

The single-process, multi-device case needs no ``--coordinator``: on one machine with
several GPUs, or on a CPU split into devices for tests with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from cnnkit._backend import keras
import numpy as np

from cnnkit.datasets.lazy import take_rows
from cnnkit.errors import ConfigError

if TYPE_CHECKING:
    from cnnkit.config import TrainConfig
    from cnnkit.training import Split

MODES = ("data-parallel",)
LAUNCH_FIELDS = ("distribute", "coordinator", "num_processes", "process_id")


def parse_coordinator(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:1234`` for IPv6) into host and port; raise ConfigError if malformed.

    Example:
        >>> parse_coordinator("10.0.0.1:1234")
        ('10.0.0.1', 1234)
    """
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return host, int(port)
    raise ConfigError(f"Expected --coordinator as HOST:PORT with a port in 1-65535. Received: coordinator={address!r}.",
                      "Pass process 0's address and a free port, e.g. --coordinator 10.0.0.1:1234, on every process.")


def check_options(config: TrainConfig) -> None:
    """Validate the distribution options of ``config`` (no device is touched); raise ConfigError."""
    mode, coordinator, processes, pid = (getattr(config, name) for name in LAUNCH_FIELDS)
    if mode is not None and mode not in MODES:
        raise ConfigError(f"Unknown distribution. Expected one of {MODES}. Received: distribute={mode!r}.",
                          "Fix the --distribute option.")
    if mode is None and (coordinator or processes is not None or pid is not None):
        raise ConfigError("Expected --distribute data-parallel with --coordinator, --num-processes or --process-id. "
                          "Received: distribute=None.", "Add --distribute data-parallel.")
    if processes is not None and processes < 1:
        raise ConfigError(f"Expected --num-processes ≥ 1. Received: num_processes={processes}.",
                          "Pass the number of processes that join the run (one per host, usually).")
    if (processes or 1) > 1 and not coordinator:
        raise ConfigError(f"Expected --coordinator HOST:PORT with --num-processes {processes}. Received: coordinator=None.",
                          "Pass process 0's address, e.g. --coordinator 10.0.0.1:1234, on every process.")
    if coordinator:
        parse_coordinator(coordinator)
        if processes is None:
            raise ConfigError("Expected --num-processes with --coordinator. Received: num_processes=None.",
                              "Pass the number of processes that join the run, the same on every process.")
    if (processes or 1) > 1 and pid is None:
        raise ConfigError(f"Expected --process-id in [0, {processes}) with --num-processes {processes}. "
                          "Received: process_id=None.", "Give each process its own id; 0 is the one that writes.")
    if pid is not None and not 0 <= pid < (processes or 1):
        raise ConfigError(f"Expected --process-id in [0, {processes or 1}). Received: process_id={pid}.",
                          f"Process ids run from 0 to --num-processes − 1 ({(processes or 1) - 1}); "
                          "process 0 is the coordinator and the only one that writes the run folder.")
    if (processes or 1) > 1 and config.max_minutes:
        raise ConfigError(f"Expected no --max-minutes in a multi-process run. Received: max_minutes={config.max_minutes}.",
                          "Each process would stop at its own clock and the others would wait forever; "
                          "use --epochs or --early-stopping (decided on validation loss, the same everywhere).")


def relaunch(saved: TrainConfig, launch: TrainConfig) -> TrainConfig:
    """The saved config of a run to resume, with this launch's distribution options where it gives them.

    A run's settings come from its ``config.json``; where each process runs is a property of
    the launch (the coordinator's port may change, every process has its own ``--process-id``).
    """
    given = {name: getattr(launch, name) for name in LAUNCH_FIELDS if getattr(launch, name) is not None}
    return dataclasses.replace(saved, **{**given, "process_id": launch.process_id})


def is_chief() -> bool:
    """True on process 0 of a multi-process run, and always outside one: the process that writes."""
    jax = sys.modules.get("jax")
    return jax is None or not jax.distributed.is_initialized() or jax.process_index() == 0


def check_devices(batch_size: int, devices: int, local_devices: int, processes: int) -> None:
    """Raise ConfigError unless every process has as many devices and the global batch splits evenly."""
    if devices != local_devices * processes:
        raise ConfigError(f"Expected the same number of devices in every process. Received: {devices} devices "
                          f"in {processes} processes, {local_devices} in this one.",
                          "Give every process the same devices (e.g. the same GPU count per host).")
    if batch_size % devices:
        raise ConfigError(f"Expected --batch-size divisible by the {devices} devices (it is the global batch, "
                          f"split evenly across them). Received: batch_size={batch_size}.",
                          f"Use a multiple of {devices}, e.g. --batch-size {max(1, batch_size // devices) * devices}.")


def setup(config: TrainConfig) -> None:
    """Join the processes (if several) and make ``DataParallel`` over every device current.

    Does nothing unless ``config.distribute`` is set. Call it before anything touches a device.
    """
    if not config.distribute:
        return
    if keras.backend.backend() != "jax":
        raise ConfigError(f"Expected the JAX backend for --distribute {config.distribute}. "
                          f"Received: backend={keras.backend.backend()!r}.",
                          "Set KERAS_BACKEND=jax (and pip install 'cnnkit[jax]').")
    import jax

    if config.coordinator and not jax.distributed.is_initialized():
        print(f"Process {config.process_id} of {config.num_processes}: joining {config.coordinator} …", flush=True)
        host, _ = parse_coordinator(config.coordinator)
        # JAX's coordinator listens on every interface unless told otherwise; a loopback run needs none.
        loopback = host in ("localhost", "[::1]") or host.startswith("127.")
        jax.distributed.initialize(config.coordinator, config.num_processes, config.process_id,
                                   coordinator_bind_address=config.coordinator if loopback else None)
    devices, processes = jax.device_count(), jax.process_count()
    check_devices(config.batch_size, devices, jax.local_device_count(), processes)
    # cnnkit shards the data itself (GlobalBatches), so Keras must not try to.
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False))
    print(f"Data-parallel: {devices} device(s) in {processes} process(es); global batch {config.batch_size} = "
          f"{config.batch_size // devices} per device.", flush=True)


@contextlib.contextmanager
def without_distribution() -> Iterator[None]:
    """Run code that only process 0 runs (saving a checkpoint) with no distribution in effect.

    Under a distribution every new variable is placed on all devices of all processes, a
    step every process must take together; Keras' saving creates one (a reference optimizer),
    so saving on process 0 alone would stall or fail. Without it, reading the replicated
    weights is local.
    """
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def is_active() -> bool:
    """Whether a Keras distribution is in effect (set by :func:`setup`)."""
    return keras.distribution.distribution() is not None


def fit_inputs(split: Split, config: TrainConfig, initial_epoch: int = 0) -> tuple[dict[str, Any], list[Any]]:
    """``model.fit`` arguments and the callback that tells the training batches which epoch it is."""
    import jax

    share = {"devices": jax.device_count(), "process": jax.process_index(), "processes": jax.process_count()}
    train = GlobalBatches(split.x_train, split.y_train, config.batch_size, seed=config.seed, epoch=initial_epoch,
                          **share)
    val = GlobalBatches(split.x_val, split.y_val, config.batch_size, **share)
    return {"x": train, "validation_data": val, "shuffle": False}, [_EpochOf(train)]


def to_local(model: keras.Model) -> keras.Model:
    """The model with its (replicated) weights copied onto this process's default device.

    After a data-parallel fit the weights live on every device of every process; a local
    copy lets each process predict on its own (no collective), and saves and loads like any
    model. Clears the distribution. A model trained without one is returned as is.
    """
    if not is_active():
        return model
    with tempfile.TemporaryDirectory(prefix="cnnkit-local-") as tmp:
        path = Path(tmp) / "model.keras"
        with without_distribution():  # reading a replicated weight is local; nothing waits for the others
            model.save(path)
        keras.distribution.set_distribution(None)
        return keras.saving.load_model(path)


class GlobalBatches(keras.utils.PyDataset):
    """This process's share of every global batch (see the module docstring for the layout).

    Without ``seed`` the batches are in order (validation); with it, shuffled per epoch by
    ``(seed, epoch)``.
    """

    def __init__(self, x: Any, y: np.ndarray, global_batch: int, *, devices: int, process: int, processes: int,
                 seed: int | None = None, epoch: int = 0) -> None:
        super().__init__()
        self.x, self.y, self.global_batch, self.seed, self.epoch = x, np.asarray(y), global_batch, seed, epoch
        self.process, self.processes = process, processes
        full, rest = divmod(len(x), global_batch)
        rest -= rest % devices  # every device takes the same number of rows
        self.sizes = [global_batch] * full + ([rest] if rest else [])
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.sizes)

    def order(self) -> np.ndarray:
        if self.seed is None:
            return np.arange(len(self.x))
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x)))
        return self._order[1]

    def rows(self, index: int) -> np.ndarray:
        """Positions (into x) of this process's rows of global batch ``index``."""
        share = self.sizes[index] // self.processes
        start = index * self.global_batch + self.process * share
        return self.order()[start:start + share]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.sort(self.rows(index))  # sequential reads; the order inside a batch does not matter
        return take_rows(self.x, rows), self.y[rows]


class _EpochOf(keras.callbacks.Callback):
    """Tells shuffled batches the epoch Keras starts, so the order depends on it alone."""

    def __init__(self, batches: GlobalBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.epoch = epoch
