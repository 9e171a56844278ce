"""The micro-batcher on its own: batching, splitting, back-pressure, draining (no HTTP, no model)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from cnnkit.engines import Engine
from cnnkit.server.batcher import MicroBatcher, QueueFullError, ShuttingDownError

SHAPE = (2, 2, 1)


class Recorder(Engine):
    """A fake model: each image's first pixel becomes its 'probability', so rows can be traced back."""

    name = "recorder"
    input_shape = SHAPE

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.calls.append(len(pixels))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in pixels[:, 0, 0, 0]:
            raise RuntimeError("model exploded")
        return np.stack([pixels[:, 0, 0, 0], 255 - pixels[:, 0, 0, 0]], axis=1).astype(np.float32)


def images(*values: int) -> np.ndarray:
    out = np.zeros((len(values), *SHAPE), np.uint8)
    out[:, 0, 0, 0] = values
    return out


async def started(infer: Recorder, **options) -> MicroBatcher:
    options = {"max_batch_size": 8, "max_wait_ms": 20, "queue_size": 16, **options}
    batcher = MicroBatcher(infer, **options)
    await batcher.start()
    while not batcher.ready:
        await asyncio.sleep(0.001)
    infer.calls.clear()  # forget the warm-up
    return batcher


def test_warm_up_covers_every_padded_size_then_ready():
    async def scenario():
        infer = Recorder()
        batcher = MicroBatcher(infer, max_batch_size=12, max_wait_ms=0, queue_size=4)
        assert not batcher.ready
        await batcher.start()
        while not batcher.ready:
            await asyncio.sleep(0.001)
        await batcher.close()
        return infer.calls, batcher.ready

    calls, ready = asyncio.run(scenario())
    assert calls == [1, 2, 4, 8, 16] and ready is False  # 12 is padded to 16 on JIT backends; closed again


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    async def scenario():
        infer = Recorder()
        batcher = await started(infer)
        results = await asyncio.gather(batcher.submit(images(1)), batcher.submit(images(2, 3, 4)),
                                       batcher.submit(images(5, 6)))
        await batcher.close()
        return infer.calls, results

    calls, results = asyncio.run(scenario())
    assert calls == [6]
    assert [r[:, 0].tolist() for r in results] == [[1], [2, 3, 4], [5, 6]]


def test_batches_hold_whole_requests_and_large_ones_are_chunked():
    async def scenario():
        infer = Recorder()
        batcher = await started(infer, max_batch_size=4)
        small = await asyncio.gather(batcher.submit(images(1, 2, 3)), batcher.submit(images(4, 5, 6)))
        large = await batcher.submit(images(*range(10)))
        await batcher.close()
        return infer.calls, small, large

    calls, small, large = asyncio.run(scenario())
    assert calls == [3, 3, 4, 4, 2]  # 3+3 > 4: the second request waits for the next call, in order
    assert [r[:, 0].tolist() for r in small] == [[1, 2, 3], [4, 5, 6]]
    assert large[:, 0].tolist() == list(range(10))


def test_full_queue_refuses_at_once():
    gate, entered = threading.Event(), threading.Event()

    class Blocking(Recorder):
        def __call__(self, pixels: np.ndarray) -> np.ndarray:
            entered.set()
            gate.wait(10)
            return super().__call__(pixels)

    async def scenario():
        gate.set()  # let the warm-up through
        batcher = await started(Blocking(), queue_size=1, max_wait_ms=0)
        gate.clear()
        entered.clear()
        running = asyncio.create_task(batcher.submit(images(1)))
        while not entered.is_set():  # the model is busy with request 1 ...
            await asyncio.sleep(0.001)
        queued = asyncio.create_task(batcher.submit(images(2)))  # ... request 2 fills the queue ...
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="1 requests are already waiting"):
            await batcher.submit(images(3))  # ... and request 3 is refused without waiting
        gate.set()
        done = await asyncio.gather(running, queued)
        await batcher.close()
        return [r[:, 0].tolist() for r in done]

    assert asyncio.run(scenario()) == [[1], [2]]


def test_close_drains_queued_requests_then_refuses_new_ones():
    async def scenario():
        infer = Recorder(delay=0.02)
        batcher = await started(infer, max_batch_size=1, max_wait_ms=0)
        pending = [asyncio.create_task(batcher.submit(images(v))) for v in (1, 2, 3, 4)]
        await asyncio.sleep(0)  # all four are queued
        await batcher.close()
        assert all(task.done() for task in pending)
        with pytest.raises(ShuttingDownError):
            await batcher.submit(images(5))
        return [task.result()[0, 0] for task in pending]

    assert asyncio.run(scenario()) == [1, 2, 3, 4]


def test_a_model_failure_fails_its_batch_only():
    async def scenario():
        infer = Recorder(fail_on=9)
        batcher = await started(infer, max_wait_ms=0)
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(images(9))
        after = await batcher.submit(images(1))
        await batcher.close()
        return after[0, 0]

    assert asyncio.run(scenario()) == 1
