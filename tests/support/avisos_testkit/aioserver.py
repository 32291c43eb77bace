"""An aiohttp application served from a background thread on 127.0.0.1, so that tests and
benchmarks on any event loop (or none) can use a local stand-in of an HTTP provider."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

#: How long start() waits for the port to listen, and stop() for the thread to end.
THREAD_TIMEOUT_SECS = 10.0


class ThreadedApp:
    """Serves ``app`` on ``port`` in a thread of its own. ``start()`` returns once the
    port listens; ``stop()`` closes the site and ends the thread."""

    def __init__(self, app: web.Application, port: int, name: str) -> None:
        self.app = app
        self.port = port
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self.app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(THREAD_TIMEOUT_SECS)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREAD_TIMEOUT_SECS)
            self._loop = None
