"""Settings of the notification API (environment variables prefixed ``AVISOS_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr

from avisos_common.settings import ServiceSettings

_DEV_TICKET_SECRET = "dev-only-ticket-secret-not-for-production-use-0000"  # noqa: S105 - refused outside dev/test
_DEV_INTERNAL_TOKEN = "dev-only-internal-token-not-for-production-use-000"  # noqa: S105 - refused outside dev/test


class Settings(ServiceSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: Public origin of the web app (used for links in messages and cookie decisions).
    public_url: str = "http://localhost:8080"

    #: Signs the short-lived WebSocket tickets; shared with the gateway.
    ticket_secret: SecretStr = SecretStr(_DEV_TICKET_SECRET)
    ticket_ttl_secs: int = 30
    #: Authenticates internal calls (gateway, reports) to /internal/v1.
    internal_token: SecretStr = SecretStr(_DEV_INTERNAL_TOKEN)

    session_ttl_secs: int = 12 * 3600
    #: Secure cookies; on by default outside dev and test.
    cookie_secure: bool | None = None

    login_max_failures: int = 5
    login_window_secs: int = 15 * 60

    idempotency_ttl_secs: int = 24 * 3600
    unread_cache_ttl_secs: int = 300

    #: Run the outbox relay inside the API process (also runnable alone: avisos-api relay).
    run_relay: bool = True
    relay_batch_size: int = 500
    relay_poll_secs: float = 1.0

    # --- events, rules, templates, preferences (issue 4) ---
    #: Consume inventory events from AMQP inside the API process.
    run_ingest: bool = True
    #: How often scheduled deliveries (quiet hours, digests, unread checks) are released.
    scheduler_poll_secs: float = 15.0
    #: How often unacknowledged critical alerts are checked for escalation.
    escalation_poll_secs: float = 30.0
    #: VAPID public key (base64url) browsers need to subscribe to Web Push.
    vapid_public_key: str | None = None

    #: Readiness URLs of the other services for the admin System screen:
    #: ``name=url,name=url`` (e.g. ``ws-gateway=http://ws-gateway:8001/readyz``).
    service_ready_urls: str = ""

    secret_fields: tuple[str, ...] = ("ticket_secret", "internal_token")

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.env == "prod"


@lru_cache
def get_settings() -> Settings:
    return Settings()
