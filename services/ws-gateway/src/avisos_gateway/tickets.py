"""Verification of gateway tickets (docs/architecture.md, "Gateway tickets").

:func:`verify_ticket` is pure (signature, algorithm, audience, issuer, lifetime, claims);
single use, session and user checks need Redis and PostgreSQL and live in the server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "sid", "jti", "iat", "exp")
#: Tickets are minted for 30 s; refuse anything claiming to live much longer.
MAX_TICKET_LIFETIME_SECS = 120
MAX_TICKET_LENGTH = 4096


class TicketError(ValueError):
    """The ticket is not acceptable; ``reason`` is a short label for logs and metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ticket:
    user_id: uuid.UUID
    session_id: str
    jti: str
    exp: int


def verify_ticket(
    token: str, *, secret: str, audience: str, issuer: str, leeway_secs: int = 5
) -> Ticket:
    """Return the ticket's claims, or raise :class:`TicketError`.

    Only HS256 is accepted: ``alg: none`` and every other algorithm are refused by
    PyJWT's algorithm allowlist before the signature is looked at."""
    if not token or len(token) > MAX_TICKET_LENGTH:
        raise TicketError("missing" if not token else "too_long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=leeway_secs,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TicketError("expired") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise TicketError("bad_algorithm") from exc
    except jwt.InvalidSignatureError as exc:
        raise TicketError("bad_signature") from exc
    except jwt.PyJWTError as exc:
        raise TicketError("invalid") from exc
    try:
        user_id = uuid.UUID(str(claims["sub"]))
        session_id = str(claims["sid"])
        jti = str(claims["jti"])
        exp = int(claims["exp"])
        iat = int(claims["iat"])
    except (ValueError, TypeError) as exc:
        raise TicketError("bad_claims") from exc
    if not session_id or not jti or len(jti) > 128 or len(session_id) > 128:
        raise TicketError("bad_claims")
    if exp - iat > MAX_TICKET_LIFETIME_SECS:
        raise TicketError("lifetime_too_long")
    return Ticket(user_id=user_id, session_id=session_id, jti=jti, exp=exp)
