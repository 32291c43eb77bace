"""Background tasks of the API process, started by main.py through
``state.extras['on_startup']`` (async callables taking the AppState, cancelled at
shutdown):

* :func:`run_ingest_worker`: the AMQP ingest worker (waits for the broker connection).
* :func:`run_scheduler`: releases due scheduled deliveries (quiet hours, digests, unread
  checks).
* :func:`run_escalation`: escalates open critical alerts nobody acknowledged.

The loops read the clock from ``state.extras['clock']`` when a test injects one; tests
call :func:`release_once` / :func:`escalate_once` with an explicit time instead of waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from avisos_api.api.deps import AppState
from avisos_api.events import alerts, deliveries
from avisos_api.events.context import Work, state_clock
from avisos_api.events.worker import IngestWorker
from avisos_api.services import notifications as notif_svc

log = logging.getLogger(__name__)

#: How often the ingest task looks for the broker connection while it is not up yet.
AMQP_WAIT_SECS = 0.2


async def release_once(state: AppState, now: dt.datetime | None = None) -> int:
    """One pass: send the scheduled deliveries due at ``now``; commits."""
    async with state.sessionmaker() as session:
        work = Work(session, now or state_clock(state.extras)(), state.settings)
        n = await deliveries.release_due(work)
        await work.renderer.flush_errors(work.now)
        await notif_svc.commit(session, state.cache, state.settings.unread_cache_ttl_secs)
    return n


async def escalate_once(state: AppState, now: dt.datetime | None = None) -> int:
    """One pass: escalate the alerts due at ``now``; commits."""
    async with state.sessionmaker() as session:
        work = Work(session, now or state_clock(state.extras)(), state.settings)
        n = await alerts.escalate_due(work)
        await work.renderer.flush_errors(work.now)
        await notif_svc.commit(session, state.cache, state.settings.unread_cache_ttl_secs)
    return n


async def _loop(
    name: str, state: AppState, interval_secs: float, once: Callable[[AppState], Awaitable[int]]
) -> None:
    while True:
        try:
            done = await once(state)
            if done:
                log.info("background pass", extra={"task": name, "done": done})
        except asyncio.CancelledError:
            raise
        except Exception:
            # A failing pass (database restarting...) must not end the loop.
            log.exception("background pass failed", extra={"task": name})
        await asyncio.sleep(interval_secs)


async def run_scheduler(state: AppState) -> None:
    await _loop("scheduled-deliveries", state, state.settings.scheduler_poll_secs, release_once)


async def run_escalation(state: AppState) -> None:
    await _loop("escalation", state, state.settings.escalation_poll_secs, escalate_once)


async def run_ingest_worker(state: AppState) -> None:
    """Consume inventory events until cancelled (then finish in-flight ones)."""
    if not state.settings.run_ingest:
        return
    # main.py's connector stores the connection in extras without signalling: poll it.
    while state.extras.get("amqp") is None:  # noqa: ASYNC110
        await asyncio.sleep(AMQP_WAIT_SECS)
    worker = IngestWorker(state.extras["amqp"], state)
    await worker.start()
    state.extras["ingest_worker"] = worker
    try:
        await asyncio.Event().wait()
    finally:
        await worker.stop(timeout_secs=10)


def startup_tasks() -> list[Callable[[AppState], Awaitable[None]]]:
    return [run_ingest_worker, run_scheduler, run_escalation]
