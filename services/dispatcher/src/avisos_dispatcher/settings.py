"""Dispatcher settings (environment variables prefixed ``AVISOS_``).

Secrets (SMTP passwords, Twilio auth token, VAPID private key) are :class:`SecretStr` and
listed in ``secret_fields`` only when the channel is configured, so a deployment without
SMS does not need a Twilio token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator

from avisos_common.settings import ServiceSettings, SettingsError

TlsMode = Literal["none", "starttls", "tls"]


class SmtpServer:
    """One SMTP relay as the email sender uses it (built from the flat settings)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        tls: TlsMode,
        username: str | None,
        password: str | None,
        validate_certs: bool,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.validate_certs = validate_certs


class DispatcherSettings(ServiceSettings):
    # --- email ------------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    #: none | starttls | tls (implicit TLS, usually port 465)
    smtp_tls: TlsMode = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_validate_certs: bool = True
    #: A secondary relay used while the primary is down (connection refused, timeouts, 4xx
    #: on connect). Unset host: no fallback.
    smtp_fallback_host: str | None = None
    smtp_fallback_port: int = 25
    smtp_fallback_tls: TlsMode = "none"
    smtp_fallback_username: str | None = None
    smtp_fallback_password: SecretStr | None = None
    smtp_fallback_validate_certs: bool = True
    smtp_pool_size: int = 8
    smtp_timeout_secs: float = 15.0
    #: After this many seconds a connection is closed and reopened (relays drop idle ones).
    smtp_max_connection_age_secs: float = 300.0
    #: Messages sent on one connection before it is recycled.
    smtp_max_messages_per_connection: int = 500
    #: After the primary fails, how long to prefer the fallback before trying it again.
    smtp_failover_cooldown_secs: float = 30.0
    email_from: str = "avisos@localhost"
    email_from_name: str = "Avisos"
    #: Domain used in Message-ID (derived from delivery_id so duplicates are recognisable).
    email_message_id_domain: str = "avisos.local"
    #: Shared directory where the reports service writes files; attachments are read here.
    reports_dir: Path = Path("var/reports")
    max_attachment_bytes: int = 20 * 1024 * 1024

    # --- sms (Twilio) -----------------------------------------------------------------
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    twilio_status_callback_url: str | None = None
    twilio_timeout_secs: float = 15.0
    #: SMS a single phone number may receive per rolling hour; more are not sent.
    sms_per_recipient_per_hour: int = 10

    # --- web push ----------------------------------------------------------------------
    #: base64url DER/raw private key as printed by ``avisos-admin vapid-keys``.
    vapid_private_key: SecretStr | None = None
    vapid_subject: str = "mailto:ops@avisos.local"
    #: Lifetime of a VAPID JWT; push services refuse more than 24 h.
    vapid_token_ttl_secs: int = 12 * 3600
    push_timeout_secs: float = 10.0
    #: Threads for payload encryption (ECDH + AES-GCM is CPU work; keep the loop free).
    push_crypto_threads: int = 4

    # --- rate limits (token buckets, per provider, shared through Redis) ---------------
    rate_email_per_sec: float = 1000.0
    rate_sms_per_sec: float = 50.0
    rate_push_per_sec: float = 2000.0

    # --- reliability -------------------------------------------------------------------
    #: Attempts per channel before the message is dead-lettered.
    email_max_attempts: int = 8
    sms_max_attempts: int = 6
    push_max_attempts: int = 6
    #: Base of the exponential backoff (seconds); tests use a small one.
    retry_backoff_base_secs: float = 2.0
    #: A claim older than this is considered abandoned (crashed dispatcher) and retaken.
    claim_lease_secs: float = 120.0
    #: Messages processed concurrently per channel (urgent lane first).
    concurrency: int = 32
    #: Broker prefetch per lane queue.
    prefetch: int = 64
    #: Channels this instance consumes.
    channels: list[Literal["email", "sms", "push"]] = ["email", "sms", "push"]
    #: PostgreSQL connections per pool; an instance opens two (statements, and hand-over records).
    db_pool_size: int = 10
    #: Port of the /healthz, /readyz and /metrics endpoint (0: none).
    metrics_port: int = 0
    health_host: str = "0.0.0.0"

    @model_validator(mode="after")
    def _secrets_of_configured_channels(self) -> DispatcherSettings:
        # Provider-issued credentials are checked for presence, not length (an SMTP app
        # password may have 16 characters); our own VAPID key must be a real key.
        credentials: list[str] = []
        if self.smtp_username:
            credentials.append("smtp_password")
        if self.smtp_fallback_username:
            credentials.append("smtp_fallback_password")
        if "sms" in self.channels and self.twilio_account_sid:
            credentials.append("twilio_auth_token")
        self.credential_fields = tuple(credentials)
        self.secret_fields = ("vapid_private_key",) if "push" in self.channels else ()
        # The base validator ran before secret_fields was known: check again.
        self._check_secrets()  # type: ignore[operator]
        if (
            self.env not in ("dev", "test")
            and "push" in self.channels
            and not self.vapid_subject.startswith(("mailto:", "https://"))
        ):
            raise SettingsError("AVISOS_VAPID_SUBJECT must be a mailto: or https: URL")
        if self.vapid_token_ttl_secs > 24 * 3600:
            raise SettingsError("AVISOS_VAPID_TOKEN_TTL_SECS may not exceed 86400 (24 h)")
        return self

    def smtp_servers(self) -> list[SmtpServer]:
        """Primary first, then the fallback if configured."""
        servers = [
            SmtpServer(
                "primary",
                self.smtp_host,
                self.smtp_port,
                self.smtp_tls,
                self.smtp_username,
                self.smtp_password.get_secret_value() if self.smtp_password else None,
                self.smtp_validate_certs,
            )
        ]
        if self.smtp_fallback_host:
            servers.append(
                SmtpServer(
                    "fallback",
                    self.smtp_fallback_host,
                    self.smtp_fallback_port,
                    self.smtp_fallback_tls,
                    self.smtp_fallback_username,
                    self.smtp_fallback_password.get_secret_value()
                    if self.smtp_fallback_password
                    else None,
                    self.smtp_fallback_validate_certs,
                )
            )
        return servers
