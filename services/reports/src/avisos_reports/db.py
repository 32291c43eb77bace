"""One async PostgreSQL connection for the control plane (job states, leases, schedules).

Statements here are short; the long report queries run on their own synchronous
connection in the build thread (:mod:`avisos_reports.build`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row


class Database:
    """Serialises use of one autocommit connection; reconnects after a failure."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, row_factory=dict_row
            )
        return self._conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """Exclusive use of the connection (transactions: ``conn.transaction()``)."""
        async with self._lock:
            conn = await self._connection()
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                await conn.close()
                raise

    async def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self.connection() as conn:
            cur = await conn.execute(sql, params or {})
            return await cur.fetchall() if cur.description else []

    async def fetchrow(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
