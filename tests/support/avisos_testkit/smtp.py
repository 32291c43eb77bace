"""A real SMTP server (aiosmtpd) that keeps what it receives, for tests and benchmarks.

``SmtpSink`` runs in a background thread (aiosmtpd's Controller). It records every
transaction with its envelope (MAIL FROM, each RCPT TO) and raw bytes, so tests can parse the
MIME and check exactly who the message was sent to. ``down()`` closes the port (connections
are refused, like a relay that is down) and ``up()`` opens it again on the same port.
``hold_reply_secs`` delays the reply to DATA after the message was kept.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer

from avisos_testkit.infra import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    #: When the whole message had arrived (time.monotonic()).
    received_at: float = field(default_factory=time.monotonic)

    def parse(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.lower() in self.sink.refuse_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sink._record(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content))
        )
        if self.sink.hold_reply_secs:
            await asyncio.sleep(self.sink.hold_reply_secs)
        return "250 2.0.0 queued"


class _Controller(Controller):  # type: ignore[misc]
    def factory(self) -> SMTPServer:
        # Benchmarks send big batches: lift the default per-connection command limits.
        return SMTPServer(self.handler, data_size_limit=50 * 1024 * 1024, enable_SMTPUTF8=True)


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.messages: list[Received] = []
        self.refuse_recipients: set[str] = set()
        #: Keep every accepted message's 250 this long: a sender killed meanwhile has had
        #: its message taken without learning it (the crash window).
        self.hold_reply_secs = 0.0
        self._cond = threading.Condition()
        self._controller: _Controller | None = None

    def _record(self, received: Received) -> None:
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def start(self) -> SmtpSink:
        self.up()
        return self

    def up(self) -> None:
        if self._controller is None:
            self._controller = _Controller(_Handler(self), hostname=self.host, port=self.port)
            self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    stop = down

    async def await_count(self, count: int, timeout_secs: float = 20.0) -> list[Received]:
        """:meth:`wait_count` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_count, count, timeout_secs)

    def wait_count(self, count: int, timeout_secs: float = 20.0) -> list[Received]:
        """Block until at least ``count`` messages arrived; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_secs
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self.messages)}/{count} messages after {timeout_secs}s"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.down()
