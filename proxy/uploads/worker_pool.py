"""A bounded pool for CPU work (parse, decode, infer, encode) off the event loop.

At most `workers` jobs run at once, each in a thread (onnxruntime and Pillow release the GIL).
More jobs wait for a slot: that is the backpressure, and the wait counts against the job's
deadline so an overloaded proxy refuses (fail closed) instead of queueing without bound.
A slot is freed only when its thread really finishes, so a job that overran its deadline still
occupies its slot until the engine's own time limit stops it; its late result or error is
collected then (an uncollected error would be logged as an unhandled task error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class PoolTimeout(Exception):
    """The job did not finish before its deadline (waiting included)."""


class WorkerPool:
    """Run blocking callables on at most `workers` threads, with per-job deadlines."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sfumato")
        self._slots = asyncio.Semaphore(workers)
        self.running = 0
        self.waiting = 0

    async def run(self, fn: Callable[..., T], *args: object, timeout: float) -> T:
        """Run `fn(*args)` in a worker; raise PoolTimeout after `timeout` seconds in total.

        `fn` may accept a `deadline` (time.monotonic() value) as its last positional argument
        through the caller's closure; the pool itself only enforces the wait.
        """
        deadline = time.monotonic() + timeout
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError:
            raise PoolTimeout("no worker became free in time") from None
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        self.running += 1
        future = loop.run_in_executor(self._executor, fn, *args)

        def release(done: asyncio.Future) -> None:
            self.running -= 1
            self._slots.release()
            if not done.cancelled():
                done.exception()  # collected: a job abandoned at its deadline ends quietly

        future.add_done_callback(release)
        remaining = max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(future), remaining)
        except TimeoutError:
            raise PoolTimeout("the job overran its deadline") from None

    def shutdown(self) -> None:
        """Stop accepting jobs; running ones finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)
