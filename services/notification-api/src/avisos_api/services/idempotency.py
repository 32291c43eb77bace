"""``Idempotency-Key`` support: the same key with the same body gets the same answer for
24 hours; the same key with a different body is a conflict.

The record is inserted in the same transaction as the effect, so a concurrent duplicate
blocks on the primary key until the first commits, then sees the stored answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from avisos_api.exceptions import IdempotencyConflict, InvalidInput
from avisos_api.models import IdempotencyRecord

MAX_KEY_LENGTH = 200


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
    return key


async def lookup(
    session: AsyncSession, principal: str, key: str, req_hash: str
) -> IdempotencyRecord | None:
    now = dt.datetime.now(dt.UTC)
    row = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at > now,
        )
    )
    if row is not None and row.request_hash != req_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body"
        )
    return row


async def remember(
    session: AsyncSession,
    principal: str,
    key: str,
    req_hash: str,
    status_code: int,
    body: dict[str, Any],
    ttl_secs: int,
) -> None:
    now = dt.datetime.now(dt.UTC)
    # An expired record with the same key may still be there; replace it.
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at <= now,
        )
    )
    session.add(
        IdempotencyRecord(
            principal=principal,
            key=key,
            request_hash=req_hash,
            status_code=status_code,
            response_body=body,
            expires_at=now + dt.timedelta(seconds=ttl_secs),
        )
    )


async def purge_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= dt.datetime.now(dt.UTC))
    )
    return int(getattr(result, "rowcount", 0) or 0)
