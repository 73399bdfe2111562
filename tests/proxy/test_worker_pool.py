"""worker_pool: bounded concurrency, deadlines that include waiting, a free event loop."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from proxy.uploads.worker_pool import PoolTimeout, WorkerPool


async def test_at_most_workers_jobs_run_at_once() -> None:
    pool = WorkerPool(2)
    lock = threading.Lock()
    running = 0
    peak = 0

    def job(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return i * 2

    results = await asyncio.gather(*(pool.run(job, i, timeout=10) for i in range(8)))
    assert results == [i * 2 for i in range(8)]
    assert peak == 2
    pool.shutdown()


async def test_the_event_loop_keeps_running_while_jobs_block() -> None:
    pool = WorkerPool(1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await pool.run(time.sleep, 0.3, timeout=5)
    task.cancel()
    assert ticks >= 10  # ~30 expected; a blocked loop would give 1
    pool.shutdown()


async def test_deadline_counts_the_wait_for_a_worker() -> None:
    pool = WorkerPool(1)
    busy = asyncio.create_task(pool.run(time.sleep, 1.5, timeout=5))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.run(lambda: "never", timeout=0.2)
    assert time.monotonic() - started < 1.2  # did not wait for the busy worker
    await busy
    assert pool.running == 0 and pool.waiting == 0
    pool.shutdown()


async def test_an_overrunning_job_keeps_its_slot_until_it_ends() -> None:
    pool = WorkerPool(1)
    with pytest.raises(PoolTimeout):
        await pool.run(time.sleep, 0.3, timeout=0.05)
    assert pool.running == 1  # still occupying the only worker: backpressure, not overcommit
    for _ in range(100):
        if pool.running == 0:
            break
        await asyncio.sleep(0.05)
    assert pool.running == 0
    assert await pool.run(lambda: 42, timeout=1) == 42
    pool.shutdown()


async def test_job_exceptions_propagate() -> None:
    pool = WorkerPool(1)

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await pool.run(fail, timeout=1)
    assert pool.running == 0
    pool.shutdown()


async def test_an_overrun_job_that_fails_later_logs_nothing() -> None:
    """Its caller already got PoolTimeout: no "Future exception was never retrieved" later."""
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    pool = WorkerPool(1)

    def job() -> None:
        time.sleep(0.2)
        raise ValueError("too late")

    with pytest.raises(PoolTimeout):
        await pool.run(job, timeout=0.05)
    await pool.run(lambda: None, timeout=5)  # the slot comes back once the job really ended
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WorkerPool(0)
