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
- Data (:class:`cnnkit.training.inputs.GlobalBatches`): every process loads the dataset (and the same
  validation split) and, each epoch, draws the same permutation, seeded by ``(--seed, epoch)``.
  Global batch *k* is positions ``k·B … (k+1)·B`` of it; process *i* of *N* feeds the *i*-th of *N* equal, contiguous
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
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cnnkit import _backend
from cnnkit._backend import keras
from cnnkit.errors import ConfigError
from cnnkit.training.config import TrainConfig
from cnnkit.training.launch import parse_coordinator

log = logging.getLogger(__name__)


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
        raise ConfigError(f"Expected batch_size divisible by the {devices} devices (it is the global batch, "
                          f"split evenly across them). Received: batch_size={batch_size}.",
                          f"Use a multiple of {devices}, e.g. batch_size {max(1, batch_size // devices) * devices}.",
                          params="batch_size")


def setup(config: TrainConfig) -> None:
    """Join the processes (if several) and make ``DataParallel`` over every device current.

    Does nothing unless ``config.distribute`` is set. Call it before anything touches a device.
    """
    if not config.distribute:
        return
    if _backend.name() != "jax":
        raise ConfigError(f"Expected the JAX backend for distribute={config.distribute!r}. "
                          f"Received: backend={_backend.name()!r}.",
                          "Set KERAS_BACKEND=jax (and pip install 'cnnkit[jax]').", params="distribute")
    import jax

    if config.coordinator and not jax.distributed.is_initialized():
        log.info(f"Process {config.process_id} of {config.num_processes}: joining {config.coordinator} …")
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
    log.info(f"Data-parallel: {devices} device(s) in {processes} process(es); global batch {config.batch_size} = "
             f"{config.batch_size // devices} per device.")


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


