"""Browser sessions: opaque cookie tokens, stored hashed, cached in Redis.

The cookie holds a random token; PostgreSQL keeps only its SHA-256 (``sessions.id``), so
a database leak gives no usable session. Redis caches live sessions under
``{prefix}session:{sid}``; the gateway checks that key when a socket connects, so
removing it (logout, deactivation) is what locks a session out everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api import outbox
from avisos_api.core import security
from avisos_api.core.cache import Cache
from avisos_api.exceptions import RateLimited, Unauthenticated
from avisos_api.models import Session, User
from avisos_common.messages import SessionRevoked


@dataclass(frozen=True)
class SessionInfo:
    sid: str
    user_id: uuid.UUID
    csrf: str
    expires_at: dt.datetime


async def _cache(cache: Cache, info: SessionInfo) -> None:
    ttl = int((info.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
    if ttl <= 0:
        return
    await cache.client.set(
        cache.session_key(info.sid),
        json.dumps(
            {
                "user_id": str(info.user_id),
                "csrf": info.csrf,
                "expires_at": info.expires_at.isoformat(),
            }
        ),
        ex=ttl,
    )


async def start(
    session: AsyncSession,
    cache: Cache,
    user: User,
    ttl_secs: int,
    user_agent: str | None,
    ip: str | None,
) -> tuple[str, SessionInfo]:
    """Create a session; returns (cookie token, info). Commits."""
    token, sid = security.new_session_token()
    csrf = security.new_csrf_token()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl_secs)
    session.add(
        Session(
            id=sid,
            user_id=user.id,
            csrf_token=csrf,
            expires_at=expires,
            user_agent=(user_agent or "")[:300] or None,
            ip=ip,
        )
    )
    await session.commit()
    info = SessionInfo(sid, user.id, csrf, expires)
    await _cache(cache, info)
    return token, info


async def resolve(session: AsyncSession, cache: Cache, token: str) -> SessionInfo:
    """The live session for a cookie token, or Unauthenticated."""
    sid = security.sha256_hex(token)
    raw = await cache.client.get(cache.session_key(sid))
    if raw:
        data = json.loads(raw)
        return SessionInfo(
            sid,
            uuid.UUID(data["user_id"]),
            data["csrf"],
            dt.datetime.fromisoformat(data["expires_at"]),
        )
    row = await session.get(Session, sid)
    now = dt.datetime.now(dt.UTC)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthenticated("session expired or invalid; log in again")
    info = SessionInfo(sid, row.user_id, row.csrf_token, row.expires_at)
    await _cache(cache, info)
    return info


async def revoke(session: AsyncSession, cache: Cache, info: SessionInfo, reason: str) -> None:
    """End one session (logout). Commits."""
    await session.execute(
        update(Session).where(Session.id == info.sid).values(revoked_at=dt.datetime.now(dt.UTC))
    )
    outbox.add_realtime(
        session, SessionRevoked(user_id=info.user_id, session_id=info.sid, reason=reason)
    )
    await outbox.notify_relays(session)
    await session.commit()
    await cache.client.delete(cache.session_key(info.sid))


async def revoke_all(session: AsyncSession, cache: Cache, user_id: uuid.UUID, reason: str) -> None:
    """End every session of a user (deactivation, password reset). Does not commit: the
    caller commits with the change that requires it, then calls :func:`forget_all`."""
    sids = list(
        await session.scalars(
            select(Session.id).where(Session.user_id == user_id, Session.revoked_at.is_(None))
        )
    )
    await session.execute(
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
    outbox.add_realtime(session, SessionRevoked(user_id=user_id, session_id=None, reason=reason))
    session.info.setdefault("revoked_sids", []).extend(sids)


async def forget_revoked(session: AsyncSession, cache: Cache) -> None:
    """After commit: drop revoked sessions from the cache."""
    sids: list[str] = session.info.pop("revoked_sids", [])
    if sids:
        await cache.client.delete(*(cache.session_key(s) for s in sids))


async def check_login_rate(cache: Cache, email: str, max_failures: int, window_secs: int) -> None:
    key = cache.login_key(email.strip().lower())
    failures = await cache.client.get(key)
    if failures is not None and int(failures) >= max_failures:
        ttl = await cache.client.ttl(key)
        raise RateLimited(
            "too many failed logins for this account; try again later",
            retry_after_secs=max(int(ttl), 1),
        )


async def record_login_failure(cache: Cache, email: str, window_secs: int) -> None:
    key = cache.login_key(email.strip().lower())
    async with cache.client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_secs, nx=True)
        await pipe.execute()


async def clear_login_failures(cache: Cache, email: str) -> None:
    await cache.client.delete(cache.login_key(email.strip().lower()))
