"""``avisos-web``: serve the browser app (and, for local runs, the /api and /ws proxy)."""

from __future__ import annotations

import uvicorn

from avisos_common.logging import configure_logging
from avisos_web.app import create_app
from avisos_web.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("web", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        log_config=None,
        proxy_headers=True,
        ws="websockets",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
