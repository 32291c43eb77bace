"""The SMTP pool against a relay that stops answering mid-transaction (no other servers)."""

from __future__ import annotations

import asyncio

import pytest

from avisos_dispatcher.settings import SmtpServer
from avisos_dispatcher.smtp_pool import RelayDown, RelayPool

MESSAGE = b"Subject: x\r\n\r\nbody\r\n"


async def _silent_relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]
) -> None:
    """Greets and answers EHLO, then reads commands without ever answering them."""
    writer.write(b"220 relay ready\r\n")
    await writer.drain()
    while line := await reader.readline():
        seen.append(line)
        if line.upper().startswith(b"EHLO"):
            writer.write(b"250-relay\r\n250 SIZE 1000000\r\n")
            await writer.drain()


async def test_a_relay_that_stops_answering_times_out_and_is_not_reused() -> None:
    seen: list[bytes] = []
    server = await asyncio.start_server(lambda r, w: _silent_relay(r, w, seen), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = RelayPool(
        SmtpServer("primary", "127.0.0.1", port, "none", None, None, False),
        size=1,
        timeout_secs=0.3,
        max_age_secs=60,
        max_messages=10,
    )
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RelayDown, match="TimeoutError"):
            await pool.send(MESSAGE, "avisos@example.test", ["ana@example.test"])
        assert loop.time() - started < 3
        assert any(line.startswith(b"MAIL FROM:<avisos@example.test> SIZE=") for line in seen)
        assert pool._idle == []  # the desynchronised connection was dropped
    finally:
        await pool.close()
        server.close()
