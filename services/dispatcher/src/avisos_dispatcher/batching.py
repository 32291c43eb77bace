"""Coalescing of concurrent requests of one kind into one statement.

The dispatcher has many sends in flight (``CONCURRENCY`` per channel) and each needs the
same statements (claim, record...). Sent one by one they cost a PostgreSQL round trip and
transaction each, and most of the dispatcher's CPU goes into the driver and the socket
calls rather than into the work. A :class:`Coalescer` collects the requests made in one
event-loop iteration, and those made while earlier batches are still running, and sends
them as one statement; every caller still gets its own result (or its own exception) and
only when that statement has returned, i.e. committed. Under light load a batch is a single
request and costs what the plain statement costs; under heavy load batches grow by
themselves, which is when it matters.

If a batch fails as a whole (one bad row fails a multi-row statement), each of its requests
is run on its own, so an error reaches only the caller it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - request
R = TypeVar("R")  # result

#: Requests per statement at most (bounds the statement's size and lock footprint).
MAX_BATCH = 128
#: Statements of one kind running at once; new requests queue up for the next one. One:
#: measured, two in flight halve the batch size (and double the statements) for no gain
#: in throughput, the statement takes a millisecond or two.
MAX_IN_FLIGHT = 1


class Coalescer(Generic[I, R]):
    """``await coalescer(request)`` runs ``run_batch`` over this request and its concurrent
    peers. ``run_batch`` must return one result per request, in order, and be all-or-nothing
    (one statement); ``run_one`` handles a single request and is used for batches of one
    and when a batch fails."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[I]], Awaitable[list[R]]],
        run_one: Callable[[I], Awaitable[R]],
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.name = name
        self.run_batch = run_batch
        self.run_one = run_one
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Statements run and requests served (for tests and tuning).
        self.batches = 0
        self.requests = 0

    async def __call__(self, request: I) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._waiting.append((request, fut))
        if not self._scheduled and self._in_flight < self.max_in_flight:
            # Start at the end of this loop iteration, so that requests made in the same
            # iteration share the statement.
            self._scheduled = True
            loop.call_soon(self._start)
        return await fut

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and self._in_flight < self.max_in_flight:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            self.batches += 1
            self.requests += len(batch)
            if len(batch) == 1:
                await self._run_alone(*batch[0])
                return
            try:
                results = await self.run_batch([request for request, _ in batch])
            except Exception as exc:
                log.info(
                    "batch failed; running its requests one by one",
                    extra={"batch": self.name, "size": len(batch), "error": repr(exc)},
                )
                await asyncio.gather(*(self._run_alone(r, f) for r, f in batch))
                return
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
        except BaseException as exc:  # cancelled or a bug: never leave a caller hanging
            for _, fut in batch:
                if fut.done():
                    continue
                if isinstance(exc, Exception):
                    fut.set_exception(exc)
                else:
                    fut.cancel()
            raise
        finally:
            self._in_flight -= 1
            if self._waiting and not self._scheduled:
                self._start()

    async def _run_alone(self, request: I, fut: asyncio.Future[R]) -> None:
        try:
            result = await self.run_one(request)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(result)
