"""The coalescer on its own (no database): sharing, isolation of failures, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from avisos_dispatcher.batching import Coalescer


class Backend:
    """Doubles numbers; ``bad`` numbers fail, alone or in a batch; records the batches."""

    def __init__(self, bad: frozenset[int] = frozenset(), delay: float = 0.0) -> None:
        self.bad = bad
        self.delay = delay
        self.batches: list[list[int]] = []
        self.running = 0
        self.max_running = 0

    async def batch(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            if self.bad & set(items):
                raise ValueError("bad row in batch")
            return [2 * i for i in items]
        finally:
            self.running -= 1

    async def one(self, item: int) -> int:
        await asyncio.sleep(0)
        if item in self.bad:
            raise ValueError(f"bad {item}")
        return 2 * item


async def test_calls_in_one_iteration_share_a_batch() -> None:
    b = Backend()
    c = Coalescer("t", b.batch, b.one)
    assert await asyncio.gather(*(c(i) for i in range(10))) == [2 * i for i in range(10)]
    assert b.batches == [list(range(10))]
    assert (c.batches, c.requests) == (1, 10)


async def test_a_failing_batch_is_retried_one_by_one() -> None:
    b = Backend(bad=frozenset({3}))
    c = Coalescer("t", b.batch, b.one)
    results = await asyncio.gather(*(c(i) for i in range(5)), return_exceptions=True)
    assert results[:3] == [0, 2, 4] and results[4] == 8
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad 3"


async def test_batches_grow_while_earlier_ones_run() -> None:
    b = Backend(delay=0.02)
    c = Coalescer("t", b.batch, b.one, max_in_flight=1, max_batch=50)

    async def caller(i: int) -> int:
        await asyncio.sleep(0.001 * i)  # requests arrive spread out
        return await c(i)

    assert await asyncio.gather(*(caller(i) for i in range(60))) == [2 * i for i in range(60)]
    assert b.max_running == 1
    assert len(b.batches) < 10 and max(len(x) for x in b.batches) <= 50


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    b = Backend(delay=0.02)
    c = Coalescer("t", b.batch, b.one)
    tasks = [asyncio.create_task(c(i)) for i in range(4)]
    await asyncio.sleep(0.005)  # the batch is running
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert [await t for t in (tasks[0], tasks[2], tasks[3])] == [0, 4, 6]
    assert await c(7) == 14  # still usable
