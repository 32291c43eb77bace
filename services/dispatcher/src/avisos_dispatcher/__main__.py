"""``avisos-dispatcher``: run the email, SMS and push consumers until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from avisos_common.logging import configure_logging
from avisos_dispatcher.app import run
from avisos_dispatcher.settings import DispatcherSettings


def main() -> None:
    settings = DispatcherSettings()
    configure_logging("dispatcher", settings.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional (not on Windows)
        asyncio.run(run(settings))
    else:
        # uvloop's event loop costs less CPU per message than asyncio's, which is most
        # of what a dispatcher spends between providers.
        uvloop.run(run(settings))


if __name__ == "__main__":
    main()
