"""Publisher API keys: prefixed, 256 random bits, stored as SHA-256, scoped, revocable."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.core import security
from avisos_api.exceptions import NotFound, Unauthenticated
from avisos_api.models import ApiKey

#: last_used_at is written at most this often per key, to keep hot keys off the disk.
LAST_USED_RESOLUTION_SECS = 60


async def create(
    session: AsyncSession, name: str, scopes: Sequence[str], created_by: uuid.UUID | None
) -> tuple[ApiKey, str]:
    """Returns (row, plaintext key). The plaintext is never stored: show it once."""
    new = security.new_api_key()
    row = ApiKey(
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        scopes=list(scopes),
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    return row, new.plaintext


async def authenticate(session: AsyncSession, presented: str) -> ApiKey:
    prefix = security.parse_api_key(presented)
    if prefix is None:
        raise Unauthenticated("malformed API key")
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or not security.constant_time_equals(
        row.key_hash, security.sha256_hex(presented)
    ):
        raise Unauthenticated("unknown API key")
    if row.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    now = dt.datetime.now(dt.UTC)
    if (
        row.last_used_at is None
        or (now - row.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECS
    ):
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        await session.commit()
        row.last_used_at = now
    return row


async def revoke(session: AsyncSession, key_id_or_prefix: str) -> ApiKey:
    try:
        cond = ApiKey.id == uuid.UUID(key_id_or_prefix)
    except ValueError:
        cond = ApiKey.prefix == key_id_or_prefix
    row = await session.scalar(select(ApiKey).where(cond))
    if row is None:
        raise NotFound("API key not found")
    if row.revoked_at is None:
        row.revoked_at = dt.datetime.now(dt.UTC)
    await session.flush()
    return row


async def list_all(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))
