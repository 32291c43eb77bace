"""Waiting for a state the test cannot subscribe to (a row written, a message consumed, a
page updated by a worker): poll, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: Between two looks; short, since every wait ends as soon as the state is there.
POLL_INTERVAL_SECS = 0.05
DEFAULT_TIMEOUT_SECS = 20.0


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], object] = ...,
    *,
    timeout_secs: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    done: Callable[[T], object] = ...,
    *,
    timeout_secs: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    done: Callable[[Any], object] = bool,
    *,
    timeout_secs: float = DEFAULT_TIMEOUT_SECS,
    what: str = "condition",
) -> Any:
    """Call ``probe`` (plain or async) until ``done`` holds for its answer (by default: the
    answer is truthy), and return that answer. When ``timeout_secs`` run out, raise
    TimeoutError naming ``what`` and the last answer, so the failure shows what was seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_secs
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if done(value):
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout_secs}s (last: {value!r})")
        await asyncio.sleep(POLL_INTERVAL_SECS)
