"""Gateway configuration, read from ``AVISOS_*`` environment variables."""

from __future__ import annotations

import os
import secrets
import socket

from pydantic import Field, SecretStr, model_validator

from avisos_common.settings import ServiceSettings, SettingsError

#: The API's development defaults, so that ``make run`` works without configuration;
#: refused outside dev/test (see :meth:`GatewaySettings._no_dev_secrets`).
DEV_TICKET_SECRET = "dev-only-ticket-secret-not-for-production-use-0000"  # noqa: S105
DEV_INTERNAL_TOKEN = "dev-only-internal-token-not-for-production-use-000"  # noqa: S105


def _default_instance_id() -> str:
    # Unique per process: the instance's exclusive queue is named after it.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class GatewaySettings(ServiceSettings):
    """Everything the gateway can be told. Units are in the names."""

    gateway_host: str = "0.0.0.0"
    #: ``AVISOS_GATEWAY_PORT``.
    gateway_port: int = 8090
    #: URL path of the WebSocket endpoint (the front proxies ``/ws`` here).
    ws_path: str = "/ws"
    instance_id: str = Field(default_factory=_default_instance_id)

    #: HS256 key shared with the API that mints tickets (``AVISOS_TICKET_SECRET``).
    ticket_secret: SecretStr = SecretStr(DEV_TICKET_SECRET)
    ticket_audience: str = "avisos-gateway"
    ticket_issuer: str = "avisos-api"
    #: Tolerated clock skew between API and gateway when checking ``exp``/``iat``.
    ticket_leeway_secs: int = 5
    #: A ticket's replay-protection record lives this long in Redis (> ticket lifetime).
    ticket_replay_window_secs: int = 120

    #: ``AVISOS_API_INTERNAL_URL``: base URL of the API's internal endpoints.
    api_internal_url: str = "http://127.0.0.1:8000"
    #: ``AVISOS_INTERNAL_TOKEN``: sent as ``X-Avisos-Internal-Token``.
    internal_token: SecretStr = SecretStr(DEV_INTERNAL_TOKEN)
    api_timeout_secs: float = 5.0

    #: Comma-separated exact origins allowed to open a socket (``AVISOS_ALLOWED_ORIGINS``).
    allowed_origins: str = "http://localhost:8080,http://127.0.0.1:8080"

    ping_interval_secs: float = 30.0
    #: A connection that sent nothing (not even a pong) for this long is closed.
    idle_timeout_secs: float = 300.0
    max_message_bytes: int = 64 * 1024
    #: Client messages: sustained rate and burst of the per-connection token bucket.
    rate_limit_per_sec: float = 10.0
    rate_limit_burst: int = 30
    #: Bytes a client may have pending in its send buffer before it is disconnected as slow.
    send_buffer_limit_bytes: int = 1024 * 1024
    #: websockets' own write high-water mark (replay waits for the buffer below it).
    write_limit_bytes: int = 16 * 1024
    max_connections_per_user: int = 10
    #: Most notifications a resume replays; a larger gap answers ``recovered: false``.
    replay_limit: int = 500
    #: permessage-deflate costs ~50 KiB per connection; off unless asked for.
    compression: bool = False
    close_timeout_secs: float = 5.0
    drain_timeout_secs: float = 10.0
    #: How often frozen objects are handed back to the cyclic GC (see Gateway._manage_gc).
    gc_unfreeze_interval_secs: float = 3600.0
    db_pool_max: int = 10
    redis_pool_max: int = 32
    #: Concurrent catch-up queries (resume and gap repair) this instance runs.
    catch_up_concurrency: int = 8

    secret_fields: tuple[str, ...] = ("ticket_secret", "internal_token")

    @model_validator(mode="after")
    def _no_dev_secrets(self) -> GatewaySettings:
        if self.env in ("dev", "test"):
            return self
        if self.ticket_secret.get_secret_value() == DEV_TICKET_SECRET:
            raise SettingsError("AVISOS_TICKET_SECRET is the development default; set it")
        if self.internal_token.get_secret_value() == DEV_INTERNAL_TOKEN:
            raise SettingsError("AVISOS_INTERNAL_TOKEN is the development default; set it")
        return self

    @property
    def origins(self) -> frozenset[str]:
        parts = (o.strip().rstrip("/") for o in self.allowed_origins.split(","))
        return frozenset(p for p in parts if p)
