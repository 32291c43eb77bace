"""Reading report rows from PostgreSQL: a server-side cursor, fetched one step ahead."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

#: Batches fetched ahead of the writer (each ``fetch_rows`` rows).
PREFETCH_BATCHES = 3
PREFETCH_POLL_SECS = 0.2


def stream_rows(
    conn: psycopg.Connection[Any], sql: str, params: dict[str, Any], fetch_rows: int
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` fetched ``fetch_rows`` at a time through a server-side cursor.

    A helper thread fetches the next batches while the caller consumes the current one
    (psycopg waits for the server without holding the GIL), so PostgreSQL's work overlaps
    with building the sheet; at most :data:`PREFETCH_BATCHES` batches are held. Nothing
    runs until the first row is asked for. The caller must exhaust or ``close()`` the
    generator (closing stops the thread), and must not use ``conn`` for anything else
    meanwhile. A server-side cursor needs a transaction: do not use autocommit."""
    batches: queue.Queue[list[tuple[Any, ...]] | BaseException | None] = queue.Queue(
        maxsize=PREFETCH_BATCHES
    )
    stop = threading.Event()

    def put(item: list[tuple[Any, ...]] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=PREFETCH_POLL_SECS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with conn.cursor(name=f"avisos_report_{uuid.uuid4().hex[:12]}") as cur:
                cur.itersize = fetch_rows
                cur.execute(sql, params)
                while not stop.is_set():
                    batch = cur.fetchmany(fetch_rows)
                    if not batch:
                        break
                    if not put(batch):
                        return
            put(None)
        except BaseException as exc:  # handed over to the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="report-fetch", daemon=True)
    thread.start()
    try:
        while True:
            item = batches.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        thread.join()
