"""Micro-batching: many requests' images, one model call.

Requests put their decoded images on a bounded queue and await a future. One
worker task takes the first waiting request, waits up to ``max_wait_ms`` for
more (while fewer than ``max_batch_size`` images are gathered), runs the model
once in its own thread, and splits the probabilities back, request by request.
Under load the queue fills while the model runs, so batches form without any
waiting at all; when idle, a lone request pays at most ``max_wait_ms``.

A full queue is refused at once (:class:`QueueFullError`, a 503 with
``Retry-After``) rather than letting latency grow without bound. :meth:`close`
stops new work and drains what was accepted, so a SIGTERM never drops a
request that was already queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cnnkit.engines import Engine
from cnnkit.server.metrics import ServerMetrics

logger = logging.getLogger("cnnkit.server")


def warmup_sizes(max_batch_size: int) -> list[int]:
    """Batch sizes to run once before serving: the powers of two up to the padded ``max_batch_size``.

    The TensorFlow path traces once for any size; a JIT backend (padded to powers of two)
    compiles each of these, so no request pays for a compilation.
    """
    return [1 << i for i in range((max_batch_size - 1).bit_length() + 1)]


class QueueFullError(RuntimeError):
    """Too many requests are waiting; the client should retry later."""


class ShuttingDownError(RuntimeError):
    """The server is draining and accepts no new work."""


@dataclass
class _Job:
    pixels: np.ndarray
    future: asyncio.Future[np.ndarray] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_STOP = object()


class MicroBatcher:
    """Collects images from concurrent requests into batches for one inference thread.

    Example:
        >>> batcher = MicroBatcher(engine, max_batch_size=32, max_wait_ms=2, queue_size=256)  # doctest: +SKIP
        >>> await batcher.start()  # doctest: +SKIP
        >>> probs = await batcher.submit(pixels)  # (N, K) for this request's N images  # doctest: +SKIP
    """

    def __init__(self, engine: Engine, *, max_batch_size: int, max_wait_ms: float, queue_size: int,
                 metrics: ServerMetrics | None = None) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue_size = queue_size
        self._queue: asyncio.Queue[object] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._carry: _Job | None = None  # a job that did not fit the previous batch
        self._closing = False
        self.ready = False  # True once the model has answered a dummy batch

    async def start(self) -> None:
        """Start the worker; it warms the model up (``ready`` turns True) before taking requests."""
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        self._closing, self._carry = False, None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnkit-infer")
        self._worker = asyncio.create_task(self._run(), name="cnnkit-batcher")

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """Queue ``(N, H, W, C)`` uint8 images; return their ``(N, K)`` probabilities."""
        if self._queue is None or self._closing:
            raise ShuttingDownError("The server is not running or is shutting down.")
        job = _Job(pixels)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFullError(f"{self._queue_size} requests are already waiting for the model.") from None
        self._set_depth()
        return await job.future

    async def close(self) -> None:
        """Refuse new work, finish every queued request, then stop the worker thread."""
        if self._queue is None or self._closing:
            return
        self._closing = True
        self.ready = False
        await self._queue.put(_STOP)  # behind every accepted job: they are all answered first
        if self._worker is not None:
            await self._worker
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self.engine.warmup, warmup_sizes(self.max_batch_size))
            self.ready = not self._closing
            if self.metrics:
                self.metrics.ready.set(1 if self.ready else 0)
        except Exception:
            logger.exception("Model warm-up failed; /readyz stays 503.")
        while (jobs := await self._collect()) is not None:
            if jobs:
                await self._run_batch(loop, jobs)

    async def _collect(self) -> list[_Job] | None:
        """The next batch of whole jobs; ``None`` once the stop marker is reached and nothing is left."""
        assert self._queue is not None
        jobs: list[_Job] = []
        count = 0
        if self._carry is not None:
            jobs, count, self._carry = [self._carry], len(self._carry.pixels), None
        else:
            item = await self._queue.get()
            if item is _STOP:
                return None
            assert isinstance(item, _Job)  # the queue holds jobs and the one stop marker
            jobs, count = [item], len(item.pixels)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch_size:
            try:  # what is already queued is taken at once; wait_for (a task and a timer) only when idle
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is _STOP:
                self._queue.put_nowait(_STOP)  # seen again after this batch: then the worker exits
                break
            assert isinstance(item, _Job)
            if count + len(item.pixels) > self.max_batch_size:
                self._carry = item  # starts the next batch; order is kept
                break
            jobs.append(item)
            count += len(item.pixels)
        self._set_depth()
        return [job for job in jobs if not job.future.done()]  # a client that hung up costs nothing

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        pixels = jobs[0].pixels if len(jobs) == 1 else np.concatenate([job.pixels for job in jobs])
        start = time.perf_counter()
        try:
            probs = await loop.run_in_executor(self._pool, self._infer_chunks, pixels)
        except Exception as exc:  # noqa: BLE001 - a model failure fails this batch's requests, not the server
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self.metrics:
            self.metrics.inference.observe(time.perf_counter() - start)
        offset = 0
        for job in jobs:
            n = len(job.pixels)
            if not job.future.done():
                job.future.set_result(probs[offset:offset + n])
            offset += n

    def _infer_chunks(self, pixels: np.ndarray) -> np.ndarray:
        """One model call per ``max_batch_size`` images (a single large request is split)."""
        outputs = []
        for start in range(0, len(pixels), self.max_batch_size):
            chunk = pixels[start:start + self.max_batch_size]
            if self.metrics:
                self.metrics.batch_size.observe(len(chunk))
            outputs.append(np.asarray(self.engine(chunk), dtype=np.float32))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _set_depth(self) -> None:
        if self.metrics and self._queue is not None:
            self.metrics.queue_depth.set(self._queue.qsize())
