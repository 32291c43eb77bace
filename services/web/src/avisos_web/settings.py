"""Settings of the web front (environment variables prefixed ``AVISOS_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from avisos_common.settings import ServiceSettings

STATIC_DIR = Path(__file__).resolve().parent / "static"


class WebSettings(ServiceSettings):
    """Where the web front listens and, for local runs, where it proxies to.

    In production the nginx front proxy routes ``/api`` and ``/ws``; set
    ``AVISOS_WEB_PROXY=false`` there and this process only serves the static app."""

    web_host: str = "0.0.0.0"
    #: ``AVISOS_WEB_PORT``.
    web_port: int = 8080
    #: ``AVISOS_API_URL``: the notification API; ``/api/x`` is proxied to ``{api_url}/x``.
    api_url: str = "http://127.0.0.1:8000"
    #: ``AVISOS_GATEWAY_URL``: the WebSocket gateway; ``/ws`` is relayed to ``{gateway_url}/ws``.
    gateway_url: str = "ws://127.0.0.1:8090"
    #: Proxy ``/api`` and ``/ws`` (local runs and tests).
    web_proxy: bool = True
    #: Seconds the proxy waits for the API (connect + whole answer).
    proxy_timeout_secs: float = 30.0
    #: Largest request body the proxy forwards (bytes).
    proxy_max_body_bytes: int = 2 * 1024 * 1024
    #: Largest WebSocket message the relay forwards (bytes).
    ws_max_message_bytes: int = 1024 * 1024
    static_dir: Path = STATIC_DIR


@lru_cache
def get_settings() -> WebSettings:
    return WebSettings()
