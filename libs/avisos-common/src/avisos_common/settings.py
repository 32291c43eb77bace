"""Settings shared by every service.

Each service subclasses :class:`ServiceSettings` with its own fields. Values come from
environment variables prefixed ``AVISOS_`` (and an optional ``.env`` file). Outside the
``dev`` and ``test`` environments a secret that is missing, too short or an obvious
placeholder stops the service at start-up instead of running insecurely.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "prod"]

#: Values that are never acceptable as a secret outside dev/test.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "changethis",
        "secret",
        "placeholder",
        "dev",
        "dev-secret",
        "please-change",
        "xxx",
        "todo",
    }
)
#: Substrings that mark a value as a placeholder (e.g. the built-in dev defaults).
PLACEHOLDER_MARKERS = (
    "dev-only",
    "not-for-production",
    "change-me",
    "changeme",
    "replace-me",
    "placeholder",
)
MIN_SECRET_LENGTH = 32

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/avisos"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the variable."""


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses add theirs and list in ``secret_fields`` the
    secrets Avisos generates itself (must be long and random), and in
    ``credential_fields`` those a provider issues (SMTP passwords, which may be short:
    only checked for being set and not a placeholder); :meth:`_check_secrets` validates
    both outside dev/test."""

    model_config = SettingsConfigDict(
        env_prefix="AVISOS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # An empty variable means "not set" (compose passes `${VAR:-}` as ""), so optional
        # settings such as AVISOS_SMTP_USERNAME keep their default instead of "".
        env_ignore_empty=True,
    )

    env: Environment = "dev"
    log_level: str = "INFO"
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    #: Prefix for every Redis key; lets test runs and tenants share one Redis.
    redis_prefix: str = "avisos:"
    amqp_url: str = DEFAULT_AMQP_URL

    secret_fields: tuple[str, ...] = ()
    credential_fields: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check_secrets(self) -> ServiceSettings:
        if self.env in ("dev", "test"):
            return self
        for name in (*self.secret_fields, *self.credential_fields):
            value = getattr(self, name, None)
            raw = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
            env_name = f"AVISOS_{name.upper()}"
            lowered = raw.strip().lower()
            if lowered in PLACEHOLDER_SECRETS or any(m in lowered for m in PLACEHOLDER_MARKERS):
                raise SettingsError(f"{env_name} is missing or a placeholder; set a real secret")
            if name in self.secret_fields and len(raw) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    f"{env_name} is too short ({len(raw)} chars); use at least "
                    f"{MIN_SECRET_LENGTH} random characters"
                )
        return self

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL in the form asyncpg accepts (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with SQLAlchemy's asyncpg driver."""
        url = self.asyncpg_dsn
        return url.replace("postgresql://", "postgresql+asyncpg://", 1)
