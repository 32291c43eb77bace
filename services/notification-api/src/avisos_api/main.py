"""Composition root of the notification API: builds the app and its long-lived parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from avisos_api.api import errors
from avisos_api.api.deps import AppState
from avisos_api.api.middleware import RequestContext
from avisos_api.api.routes import (
    alerts,
    api_keys,
    auth,
    dead_letters,
    deliveries,
    events,
    health,
    internal,
    notifications,
    preferences,
    reports,
    rules,
    system,
    templates,
    users,
    webhooks,
)
from avisos_api.core.cache import Cache
from avisos_api.core.config import Settings, get_settings
from avisos_api.core.db import make_engine, make_sessionmaker
from avisos_api.events import background as event_background
from avisos_api.relay import OutboxRelay
from avisos_api.workers.dead_letters import run_recorder
from avisos_common.amqp import connect
from avisos_common.logging import configure_logging

log = logging.getLogger(__name__)

AMQP_RETRY_SECS = 2.0


async def _keep_amqp(state: AppState, url: str) -> None:
    """Connect to RabbitMQ in the background: the API starts (and reports not ready)
    while the broker is down, instead of crashing."""
    while True:
        try:
            state.extras["amqp"] = await connect(url)
            log.info("connected to RabbitMQ")
            return
        except Exception as exc:  # aio-pika raises several unrelated types
            log.warning("RabbitMQ unreachable", extra={"error": str(exc)})
            await asyncio.sleep(AMQP_RETRY_SECS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.sqlalchemy_url)
        cache = Cache.from_url(settings.redis_url, settings.redis_prefix)
        state = AppState(settings=settings, sessionmaker=make_sessionmaker(engine), cache=cache)
        app.state.avisos = state
        # Ingest worker, scheduled-delivery release and escalation loops (issue 4).
        state.extras.setdefault("on_startup", []).extend(event_background.startup_tasks())
        tasks = [asyncio.create_task(_keep_amqp(state, settings.amqp_url), name="amqp")]
        relay: OutboxRelay | None = None
        if settings.run_relay:
            relay = OutboxRelay(
                settings.asyncpg_dsn,
                settings.amqp_url,
                settings.relay_batch_size,
                settings.relay_poll_secs,
            )
            state.extras["relay"] = relay
            tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        tasks.append(asyncio.create_task(run_recorder(state), name="dead-letter-recorder"))
        for start in state.extras.get("on_startup", []):
            tasks.append(asyncio.create_task(start(state), name=getattr(start, "__name__", "bg")))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if relay is not None:
                await relay.close()
            conn = state.extras.get("amqp")
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            await cache.close()
            await engine.dispose()

    app = FastAPI(
        title="Avisos notification API",
        version="0.1.0",
        description="Users, auth, publisher keys, events, rules, notifications. Errors are "
        "RFC 9457 problem+json.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestContext)
    for module in (health, auth, users, api_keys, notifications, internal, system):
        app.include_router(module.router)
    for module in (deliveries, dead_letters, webhooks):
        app.include_router(module.router)
    app.include_router(reports.router)
    app.include_router(reports.schedules_router)
    for module in (events, rules, templates, preferences, alerts):
        app.include_router(module.router)
    return app


def app() -> FastAPI:
    """Factory for ``uvicorn --factory avisos_api.main:app``."""
    settings = get_settings()
    configure_logging("notification-api", settings.log_level)
    return create_app(settings)
