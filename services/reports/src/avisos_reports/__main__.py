"""``avisos-reports``: run the reports service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from avisos_common.logging import configure_logging
from avisos_reports.service import ReportsService
from avisos_reports.settings import ReportsSettings


async def _serve(settings: ReportsSettings) -> None:
    service = ReportsService(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()


def main() -> None:
    settings = ReportsSettings()
    configure_logging("reports", settings.log_level)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
