"""Urgent before normal: a priority gate shared by the two lane consumers of a channel.

Each channel has two queues, ``avisos.dispatch.<channel>.urgent`` and ``.normal``. The
dispatcher consumes both (each on its own AMQP channel with its own prefetch), and every
delivered message must take a slot of the channel's :class:`PriorityGate` before it is
sent. The gate has ``concurrency`` slots; when they are all busy, waiting urgent messages
get the next free slot before any waiting normal message. So a backlog of normal messages
never delays an urgent one by more than the time one in-flight send takes, while idle
capacity still goes to the normal lane. (RabbitMQ's own consumer priorities only order
consumers of the same queue, and per-message priorities are not available on quorum
queues, hence this gate.)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from avisos_common.messages import Lane

_LANE_RANK: dict[Lane, int] = {"urgent": 0, "normal": 1}


class PriorityGate:
    def __init__(self, concurrency: int) -> None:
        self._free = concurrency
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, lane: Lane) -> AsyncIterator[None]:
        await self._acquire(lane)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, lane: Lane) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (_LANE_RANK[lane], next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # we were handed a slot but will not use it
            else:
                self._waiters = [w for w in self._waiters if w[2] is not fut]
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the waiter
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)
