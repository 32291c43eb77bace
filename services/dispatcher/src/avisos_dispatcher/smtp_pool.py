"""A pool of SMTP connections per relay, with fail-over from the primary to a fallback.

Connections are opened lazily (up to ``size`` per relay), reused for many messages (no
TCP/TLS/AUTH handshake per email), recycled after ``max_age_secs`` or
``max_messages``, and dropped on any error. When the primary cannot be reached the pool
marks it down for ``cooldown_secs`` and sends through the fallback meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib
import aiosmtplib.email
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings

from avisos_dispatcher.errors import PermanentError, TransientError
from avisos_dispatcher.handover import HandOver, undo_quietly
from avisos_dispatcher.settings import SmtpServer

log = logging.getLogger(__name__)

#: Errors that say "this relay is not reachable/usable now", as opposed to "this message".
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPConnectTimeoutError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass
class _Conn:
    client: aiosmtplib.SMTP
    opened_at: float
    sent: int = 0


class RelayDown(Exception):
    """The relay could not take the message for a reason unrelated to the message."""


class RelayPool:
    def __init__(
        self,
        server: SmtpServer,
        *,
        size: int,
        timeout_secs: float,
        max_age_secs: float,
        max_messages: int,
    ) -> None:
        self.server = server
        self.size = size
        self.timeout_secs = timeout_secs
        self.max_age_secs = max_age_secs
        self.max_messages = max_messages
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(size)
        self.down_until = 0.0

    async def _open(self) -> _Conn:
        s = self.server
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.tls == "tls",
            start_tls=s.tls == "starttls",
            validate_certs=s.validate_certs,
            timeout=self.timeout_secs,
            username=s.username,
            password=s.password,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:  # once per connection, not per message
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        return _Conn(client, time.monotonic())

    async def send(
        self,
        msg: bytes,
        sender: str,
        recipients: list[str],
        hand_over: Callable[[str], HandOver] | None = None,
    ) -> str:
        """Send the rendered message (CRLF, ASCII) on a pooled connection; return the
        relay's reply to DATA. With ``hand_over``, the final dot of DATA is recorded as it
        leaves (see :class:`avisos_dispatcher.handover.HandOver`).

        Raise :class:`RelayDown` when the relay is unusable, PermanentError/TransientError
        for what the relay said about this message."""

        async def transact(client: aiosmtplib.SMTP) -> str:
            return await _transaction(
                client, msg, sender, recipients, self.timeout_secs, hand_over, self.name
            )

        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = await self._open()
                try:
                    reply = await transact(conn.client)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    # A pooled connection the relay closed while idle: one fresh try. (If
                    # the relay had accepted the DATA before dropping, it could arrive
                    # twice; relays close idle connections before, not during, a session.)
                    await _close(conn)
                    conn = await self._open()
                    reply = await transact(conn.client)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                # The session is mid-transaction after a refusal: do not reuse it.
                await _close_quietly(conn)
                codes = [r.code for r in exc.recipients]
                text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                if codes and all(code >= 500 for code in codes):
                    raise PermanentError(f"recipient refused: {text}", provider=self.name) from exc
                raise TransientError(f"recipient deferred: {text}", provider=self.name) from exc
            except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPSenderRefused) as exc:
                await _close_quietly(conn)
                if exc.code >= 500:
                    raise PermanentError(f"{exc.code} {exc.message}", provider=self.name) from exc
                raise TransientError(f"{exc.code} {exc.message}", provider=self.name) from exc
            except _CONNECT_ERRORS as exc:
                await _close_quietly(conn)
                raise RelayDown(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                await _close_quietly(conn)
                if exc.code >= 500:
                    raise PermanentError(f"{exc.code} {exc.message}", provider=self.name) from exc
                raise TransientError(f"{exc.code} {exc.message}", provider=self.name) from exc
            except aiosmtplib.SMTPException as exc:
                await _close_quietly(conn)
                raise RelayDown(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            conn.sent += 1
            self._keep(conn)
            return reply

    def _keep(self, conn: _Conn | None) -> None:
        if conn is None:
            return
        too_old = time.monotonic() - conn.opened_at > self.max_age_secs
        if too_old or conn.sent >= self.max_messages or not conn.client.is_connected:
            asyncio.get_running_loop().create_task(_close(conn))
        else:
            self._idle.append(conn)

    @property
    def name(self) -> str:
        return f"smtp:{self.server.name}"

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)


#: What aiosmtplib's address parsing returns unchanged: a plain ``local@domain``.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


@functools.lru_cache(maxsize=64)
def _quoted(address: str) -> bytes:
    return aiosmtplib.email.quote_address(address).encode("ascii")


def _envelope_address(address: str) -> bytes:
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return _quoted(address)


async def _transaction(
    client: aiosmtplib.SMTP,
    msg: bytes,
    sender: str,
    recipients: list[str],
    timeout_secs: float,
    hand_over: Callable[[str], HandOver] | None = None,
    relay: str = "",
) -> str:
    """MAIL, RCPT (each), DATA: ``SMTP.sendmail`` without its per-message work we do not
    need (parsing every address twice with the ``email`` package, EHLO and lock checks: the
    pool gives each connection to one sender at a time and greets once per connection),
    and with one timeout around the transaction instead of a timer per reply.
    Raises the same aiosmtplib exceptions as ``sendmail``, or TimeoutError (the caller
    drops the connection, as for any error)."""
    options = [f"SIZE={len(msg)}".encode()] if client.supports_extension("size") else []
    async with asyncio.timeout(timeout_secs):
        response = await client.execute_command(
            b"MAIL", b"FROM:" + _quoted(sender), *options, timeout=None
        )
        if response.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
        refused: list[aiosmtplib.SMTPRecipientRefused] = []
        for rcpt in recipients:
            response = await client.execute_command(
                b"RCPT", b"TO:" + _envelope_address(rcpt), timeout=None
            )
            if response.code not in (
                aiosmtplib.SMTPStatus.completed,
                aiosmtplib.SMTPStatus.will_forward,
            ):
                refused.append(
                    aiosmtplib.SMTPRecipientRefused(response.code, response.message, rcpt)
                )
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        if hand_over is None:
            return (await client.data(msg, timeout=None)).message
        if client.protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            return await _data_handing_over(client.protocol, msg, hand_over(relay))
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            client.close()  # as SMTP.data does
            raise


async def _data_handing_over(protocol: SMTPProtocol, msg: bytes, hand_over: HandOver) -> str:
    """DATA in two steps: everything but the final dot, then the dot through
    :meth:`HandOver.send_last` (the relay gets it only after the hand-over record has
    committed). Like ``SMTPProtocol.execute_data_command`` (whose lock and reply flag it
    uses: aiosmtplib is pinned in uv.lock) otherwise."""
    lock = protocol._command_lock
    if lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    body = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(msg))
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    async with lock:
        protocol._response_pending = True
        protocol.write(b"DATA\r\n")
        start = await protocol.read_response(timeout=None)
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol.write(body)

        async def write_dot() -> None:
            protocol._response_pending = True
            protocol.write(b".\r\n")

        async with hand_over:  # may wait for a database connection: nothing delivered yet
            await hand_over.send_last(protocol.transport, write_dot)
        try:
            response = await protocol.read_response(timeout=None)
        except BaseException:
            await undo_quietly(hand_over)  # no answer: the retry may send it again
            raise
        if response.code != aiosmtplib.SMTPStatus.completed:
            await undo_quietly(hand_over)
            raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response.message


async def _close_quietly(conn: _Conn | None) -> None:
    if conn is not None:
        await _close(conn)


async def _close(conn: _Conn) -> None:
    try:
        if conn.client.is_connected:
            await asyncio.wait_for(conn.client.quit(), timeout=2)
    except Exception:  # closing a broken connection: nothing to do with the error
        conn.client.close()


class SmtpFailover:
    """Primary relay first; the fallback while the primary is marked down."""

    def __init__(self, pools: list[RelayPool], cooldown_secs: float) -> None:
        self.pools = pools
        self.cooldown_secs = cooldown_secs

    async def send(
        self,
        msg: bytes,
        sender: str,
        recipients: list[str],
        hand_over: Callable[[str], HandOver] | None = None,
    ) -> tuple[str, str]:
        """Return (provider name, relay reply). TransientError when no relay could take it."""
        now = time.monotonic()
        candidates = [p for p in self.pools if p.down_until <= now] or list(self.pools)
        errors: list[str] = []
        for pool in candidates:
            try:
                reply = await pool.send(msg, sender, recipients, hand_over)
            except RelayDown as exc:
                pool.down_until = time.monotonic() + self.cooldown_secs
                errors.append(str(exc))
                log.warning("smtp relay down", extra={"relay": pool.name, "error": str(exc)})
                continue
            if pool.down_until:
                pool.down_until = 0.0
            return pool.name, reply
        raise TransientError("no SMTP relay reachable: " + " | ".join(errors), provider="smtp")

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()
