"""Settings fail fast on placeholder secrets outside dev/test."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from avisos_api.core.config import Settings


def test_dev_defaults_are_accepted_in_dev() -> None:
    assert Settings(env="dev").ticket_secret.get_secret_value()


@pytest.mark.parametrize("value", ["", "changeme", "short-secret"])
def test_prod_refuses_placeholder_or_short_secrets(value: str) -> None:
    with pytest.raises(ValidationError, match="AVISOS_TICKET_SECRET"):
        Settings(env="prod", ticket_secret=SecretStr(value), internal_token=SecretStr("x" * 40))


def test_prod_refuses_the_builtin_dev_defaults() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(env="prod")


def test_prod_accepts_real_secrets() -> None:
    s = Settings(env="prod", ticket_secret=SecretStr("a" * 48), internal_token=SecretStr("b" * 48))
    assert s.secure_cookies is True
