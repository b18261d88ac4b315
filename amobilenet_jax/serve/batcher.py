"""Classifies the faces of concurrent requests in one model call: the first request of a batch
waits a few milliseconds for others, so a busy server runs a few large calls, not many small ones."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from collections.abc import Callable

import numpy as np


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """The sizes a served model is compiled for: powers of two up to ``max_batch``, and it."""
    return tuple(2**i for i in range(max_batch.bit_length()) if 2**i < max_batch) + (max_batch,)


class Batcher:
    """``await batcher(faces)`` gives ``classify(faces)``, computed in one call with the faces of
    the other requests that arrive within ``max_wait_ms`` of the batch's first, up to ``max_batch``
    faces (a request is never split: one with more faces than that runs alone). With ``sizes``,
    the batch sizes the model runs unpadded, a batch between two sizes gives its last requests
    back to lead the next batch, down to the smaller size (a padded face costs as much as a real
    one). ``classify`` runs on one worker thread, one call at a time; requests arriving meanwhile
    form the next batch. ``start`` and ``stop`` run inside the server's event loop."""

    def __init__(
        self,
        classify: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        sizes: tuple[int, ...] | None = None,
    ):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be positive and max_wait_ms >= 0")
        self.classify, self.max_batch, self.max_wait_s = classify, int(max_batch), max_wait_ms / 1000.0
        self.sizes = tuple(sizes or ())
        self.calls = self.faces = 0  # model calls made and faces classified: what batching saved
        self._task: asyncio.Task | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pending: collections.deque = collections.deque()
        self._arrived = asyncio.Event()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="classify")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    async def __call__(self, faces: np.ndarray) -> np.ndarray:
        if self._task is None:
            raise RuntimeError("Batcher.start() was not called (the app's lifespan starts it)")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((faces, future))
        self._arrived.set()
        return await future

    async def _wait(self, timeout: float | None) -> bool:
        """Waits for a request to arrive; False when ``timeout`` passed first."""
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _gather(self) -> list:
        """The next batch: the first waiting request, then those waiting or arriving within
        ``max_wait_ms``, as long as their faces fit (the first that does not, leads the next)."""
        while not self._pending:
            await self._wait(None)
        batch = [self._pending.popleft()]
        count = len(batch[0][0])
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch:
            if self._pending:
                if count + len(self._pending[0][0]) > self.max_batch:
                    break
                batch.append(self._pending.popleft())
                count += len(batch[-1][0])
            elif time.monotonic() >= deadline or not await self._wait(deadline - time.monotonic()):
                break
        if self.sizes and count not in self.sizes:
            target = max((s for s in self.sizes if s <= count), default=count)
            while len(batch) > 1 and count > target:
                self._pending.appendleft(batch.pop())  # first of the next batch, in arrival order
                count -= len(self._pending[0][0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(faces, future) for faces, future in await self._gather() if not future.done()]  # clients gone
            if not batch:
                continue
            faces = np.concatenate([f for f, _ in batch])
            try:
                probabilities = await loop.run_in_executor(self._worker, self.classify, faces)
            except Exception as e:  # noqa: BLE001 - each waiting request gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.calls += 1
            self.faces += len(faces)
            start = 0
            for part, future in batch:
                if not future.done():
                    future.set_result(probabilities[start : start + len(part)])
                start += len(part)
