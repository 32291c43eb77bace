"""``avisos-api``: serve the API (default) or run only the outbox relay (``relay``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import uvicorn

from avisos_api.core.config import get_settings
from avisos_common.logging import configure_logging


async def _relay() -> None:
    from avisos_api.relay import OutboxRelay

    settings = get_settings()
    relay = OutboxRelay(
        settings.asyncpg_dsn, settings.amqp_url, settings.relay_batch_size, settings.relay_poll_secs
    )
    task = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await relay.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="avisos-api")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "relay"])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging("notification-api", settings.log_level)
    if args.command == "relay":
        asyncio.run(_relay())
        return
    uvicorn.run(
        "avisos_api.main:app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=args.workers,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
