"""Row blocks on the engine's threads: every block once, in order, errors surfaced, no deadlock
when called from a pool thread, and a forked child gets a working pool of its own."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from perturb import row_blocks


def test_every_row_once_in_order() -> None:
    for rows, block in ((0, 4), (1, 4), (10, 3), (300, 128), (256, 128)):
        spans = row_blocks.map_row_blocks(lambda a, b: (a, b), rows, block)
        covered = [r for a, b in spans for r in range(a, b)]
        assert covered == list(range(rows))
        assert all(b - a <= block for a, b in spans)


def test_blocks_write_disjoint_rows_of_one_array() -> None:
    out = np.zeros((1000, 7))
    row_blocks.map_row_blocks(lambda a, b: out[a:b].__iadd__(np.arange(a, b)[:, None]), 1000, 64)
    np.testing.assert_array_equal(out[:, 0], np.arange(1000))


def test_errors_propagate() -> None:
    def fail(a: int, b: int) -> None:
        if a >= 128:
            raise ValueError("block failed")

    with pytest.raises(ValueError, match="block failed"):
        row_blocks.map_row_blocks(fail, 512, 64)


def test_nested_calls_from_a_pool_thread_run_inline() -> None:
    def outer(a: int, b: int) -> int:
        return sum(row_blocks.map_row_blocks(lambda c, d: d - c, b - a, 8))

    with ThreadPoolExecutor(1) as other:  # finishes instead of waiting on its own pool forever
        assert other.submit(row_blocks.map_row_blocks, outer, 512, 64).result(timeout=30) == [
            64
        ] * 8


def _in_child(queue: multiprocessing.Queue) -> None:
    queue.put(sum(row_blocks.map_row_blocks(lambda a, b: b - a, 1000, 10)))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_pool() -> None:
    row_blocks.map_row_blocks(lambda a, b: None, 1000, 10)  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=30) == 1000
    child.join(30)
    assert child.exitcode == 0
