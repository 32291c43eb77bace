"""``python -m avisos_gateway`` / ``avisos-gateway``: run one gateway instance.

Configured by ``AVISOS_*`` environment variables (see :mod:`avisos_gateway.settings`).
SIGTERM or SIGINT drains: every client gets close code 1001 and reconnects elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal

from avisos_common.logging import configure_logging
from avisos_gateway.server import Gateway
from avisos_gateway.settings import GatewaySettings

log = logging.getLogger("avisos_gateway")


def raise_fd_limit() -> int:
    """Every connection is a file descriptor: use the hard limit, not the soft default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


async def serve(settings: GatewaySettings) -> None:
    gateway = Gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    gateway.metrics.watch_gc()
    # Everything allocated so far (modules, pools, settings) lives as long as the process:
    # keep it out of the cyclic GC's scans, which otherwise grow with every import.
    gc.freeze()
    await stop.wait()
    await gateway.drain()


def main() -> None:
    settings = GatewaySettings()
    configure_logging("ws-gateway", settings.log_level)
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
