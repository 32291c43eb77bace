"""The email channel: safe MIME composition and sending through the SMTP pool.

The message is composed straight to bytes (:func:`render_message`) instead of through the
stdlib ``email`` package's object model and generator, which cost ~0.5 ms of CPU per email
(header parsing and re-folding, per-part policy lookups). The shape is the one the ``email``
package produced: a ``multipart/mixed`` around a ``multipart/alternative`` (or a single
``text/plain``), every body part base64 (so no body line can look like a boundary), header
lines folded to 78 characters the way ``email.header.Header`` folds them.

Header injection: Python's ``email`` package decodes RFC 2047 encoded words in header
values (``=?UTF-8?Q?=0A?=Bcc: x`` becomes a real line break when a client parses it back), so
header inputs are cleaned before use: control characters (CR, LF, NUL, U+2028...) become
spaces and the ``=?`` that opens an encoded word is broken with a zero-width space. Every
rendered header block is then checked to hold exactly the headers we set, none containing a
line break other than folding. Recipients never come from headers: ``sendmail`` always gets
them explicitly. The ``to`` address itself must be a plain ``local@domain`` or the delivery
fails permanently.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import mimetypes
import re
import secrets
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate
from pathlib import Path
from urllib.parse import quote

from avisos_common.messages import Attachment, EmailDelivery, utcnow
from avisos_dispatcher.base import ChannelHandler, SendResult
from avisos_dispatcher.errors import PermanentError, TransientError
from avisos_dispatcher.ratelimit import RateLimited, TokenBucket
from avisos_dispatcher.settings import DispatcherSettings
from avisos_dispatcher.smtp_pool import RelayPool, SmtpFailover
from avisos_dispatcher.store import AttemptRecord, Claimed, Store

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ENCODED_WORD_START = "=?"
_ZWSP = "\u200b"
#: A deliberately plain address: no display-name syntax, comments, quotes or lists.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_UTF8 = "utf-8"
CRLF = "\r\n"
#: RFC 5322's recommended line length; longer header lines are folded.
MAX_HEADER_LINE_CHARS = 78
#: A line break that is not folding (CRLF + space or tab).
_BARE_LINE_BREAK = re.compile(r"\r(?!\n[ \t])|(?<!\r)\n|\n(?![ \t])")
MAX_SUBJECT_CHARS = 300
MAX_NAME_CHARS = 120
EXPECTED_HEADERS = frozenset(
    {
        "subject",
        "from",
        "to",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "auto-submitted",
        "x-avisos-delivery",
    }
)
#: Headers of the body parts inside a multipart message.
PART_HEADERS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})


def clean_header_text(value: str, limit: int) -> str:
    """Text safe to put in a header: no control characters, no encoded-word opener."""
    text = _CONTROL.sub(" ", value)
    text = text.replace(_ENCODED_WORD_START, "=" + _ZWSP + "?")
    return " ".join(text.split())[:limit]


def check_address(address: str) -> str:
    if len(address) > 254 or not _ADDRESS.match(address):
        raise PermanentError("invalid email address", provider="smtp")
    return address


@dataclass(frozen=True)
class RenderedEmail:
    """A message ready for SMTP DATA: CRLF line endings, 7-bit ASCII."""

    data: bytes
    message_id: str


def message_id_for(d: EmailDelivery, settings: DispatcherSettings) -> str:
    """Derived from the delivery: a message sent again carries the same Message-ID."""
    return f"<{d.delivery_id}@{settings.email_message_id_domain}>"


def render_message(
    d: EmailDelivery, settings: DispatcherSettings, attachments: list[tuple[Attachment, bytes]]
) -> RenderedEmail:
    """The MIME message for one delivery, as bytes.

    Raise :class:`PermanentError` for an invalid address or (defence in depth) a header
    that would not be exactly one of ours."""
    to = check_address(d.to)
    text = _text_part("plain", d.text)
    if d.html:
        body_headers, body = _multipart("alternative", [text, _text_part("html", d.html)])
    else:
        body_headers, body = text
    if attachments:
        parts = [(body_headers, body)]
        parts.extend(_attachment_part(att, data) for att, data in attachments)
        root_headers, root_body = _multipart("mixed", parts)
    else:
        root_headers, root_body = body_headers, body
    message_id = message_id_for(d, settings)
    headers = [
        *root_headers,
        ("MIME-Version", "1.0"),
        ("Subject", _encode(clean_header_text(d.subject, MAX_SUBJECT_CHARS), "Subject")),
        ("From", _address(settings.email_from_name, settings.email_from)),
        ("To", _address(d.to_name, to)),
        ("Date", formatdate(localtime=False, usegmt=True)),
        # Derived from the idempotency key: a copy sent again in the crash window carries
        # the same Message-ID, which mail clients use to collapse duplicates.
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Avisos-Delivery", str(d.delivery_id)),
    ]
    data = _header_block(headers, EXPECTED_HEADERS) + root_body
    return RenderedEmail(data, message_id)


_Entity = tuple[list[tuple[str, str]], bytes]


def _b64(data: bytes) -> bytes:
    """base64 in 76-character lines, each ending in CRLF."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _text_part(subtype: str, text: str) -> _Entity:
    # A lone surrogate (possible in JSON) cannot be UTF-8: shown as "?" rather than
    # failing the delivery on every retry.
    data = text.encode(_UTF8, errors="replace")
    return (
        [
            ("Content-Type", f'text/{subtype}; charset="utf-8"'),
            ("Content-Transfer-Encoding", "base64"),
        ],
        _b64(data),
    )


def _attachment_part(att: Attachment, data: bytes) -> _Entity:
    ctype = att.content_type.lower()
    if not _CONTENT_TYPE.match(ctype):
        ctype = mimetypes.guess_type(att.filename)[0] or "application/octet-stream"
    filename = clean_header_text(att.filename, 200).replace("/", "_").replace("\\", "_")
    name = filename or "file"
    if name.isascii():
        param = 'filename="' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:  # RFC 2231, as email.utils.encode_rfc2231 writes it
        param = "filename*=utf-8''" + quote(name, safe="", encoding=_UTF8)
    headers = [
        ("Content-Type", ctype),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", f"attachment; {param}"),
    ]
    return headers, _b64(data)


def _multipart(subtype: str, parts: list[_Entity]) -> _Entity:
    # Every part body is base64 and every part header is ours, so a boundary containing
    # "=_" (impossible in base64 and in our headers) cannot occur inside a part.
    # 24 hex digits: the Content-Type line stays within 78 characters (no folding work).
    boundary = "=_" + secrets.token_hex(12)
    delimiter = b"--" + boundary.encode() + b"\r\n"
    chunks: list[bytes] = []
    for headers, body in parts:
        chunks += [delimiter, _header_block(headers, PART_HEADERS), body, b"\r\n"]
    chunks.append(b"--" + boundary.encode() + b"--\r\n")
    return [("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')], b"".join(chunks)


def _encode(text: str, name: str) -> str:
    """ASCII as is; anything else as RFC 2047 encoded words, folded (CRLF + space)
    so that no line exceeds the RFC 5322 limit."""
    if text.isascii():
        return text
    return Header(text, _UTF8, header_name=name).encode(linesep=CRLF)


def _address(name: str, address: str) -> str:
    # formataddr puts a non-ASCII name in one encoded word, as the email package did (it
    # may exceed RFC 2047's 75 characters; split words read back with stray spaces).
    return formataddr((clean_header_text(name, MAX_NAME_CHARS), address), _UTF8)


def _header_block(headers: list[tuple[str, str]], allowed: frozenset[str]) -> bytes:
    """The header lines (folded) and the empty line after them.

    Defence in depth: every name must be one of ``allowed`` and a value may contain no line
    break other than folding (CRLF followed by a space or tab); anything else fails the
    delivery permanently."""
    lines: list[str] = []
    for name, value in headers:
        if name.lower() not in allowed:
            raise PermanentError(f"unexpected header {name}")
        if ("\r" in value or "\n" in value) and _BARE_LINE_BREAK.search(value):
            raise PermanentError(f"header {name} would contain a line break")
        line = f"{name}: {value}"
        if len(line) > MAX_HEADER_LINE_CHARS and "\n" not in value:
            line = f"{name}: " + Header(value, header_name=name).encode(linesep=CRLF)
        lines.append(line)
    lines += ["", ""]
    try:
        return CRLF.join(lines).encode("ascii")
    except UnicodeEncodeError as exc:
        raise PermanentError("a header would contain non-ASCII text") from exc


def read_attachment(reports_dir: Path, att: Attachment, max_bytes: int) -> bytes:
    """The attachment's bytes from the shared reports directory (never outside it)."""
    base = reports_dir.resolve()
    path = (base / att.storage_key).resolve()
    if not path.is_relative_to(base) or att.storage_key.startswith("/"):
        raise PermanentError(f"attachment path escapes the reports directory: {att.storage_key}")
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        # Shared storage can lag behind the message: retry (bounded by the attempt limit).
        raise TransientError(f"attachment not found: {att.storage_key}") from exc
    if size > max_bytes:
        raise PermanentError(f"attachment too large: {size} bytes")
    return path.read_bytes()


class EmailHandler(ChannelHandler[EmailDelivery]):
    channel = "email"
    model = EmailDelivery

    def __init__(
        self,
        store: Store,
        settings: DispatcherSettings,
        bucket: TokenBucket | None,
        *,
        max_attempts: int,
        lease_secs: float,
    ) -> None:
        super().__init__(store, max_attempts=max_attempts, lease_secs=lease_secs)
        self.settings = settings
        self.bucket = bucket
        self.smtp = SmtpFailover(
            [
                RelayPool(
                    server,
                    size=settings.smtp_pool_size,
                    timeout_secs=settings.smtp_timeout_secs,
                    max_age_secs=settings.smtp_max_connection_age_secs,
                    max_messages=settings.smtp_max_messages_per_connection,
                )
                for server in settings.smtp_servers()
            ],
            settings.smtp_failover_cooldown_secs,
        )

    async def reconcile(self, msg: EmailDelivery, claim: Claimed) -> SendResult | None:
        """The dead dispatcher's final DATA dot had left for a relay (its hand-over record
        is on the claim): the relay has the message; record it, do not send it again."""
        if not claim.handed_over:
            return None
        relay = claim.handed_over[-1]
        now = utcnow()
        message_id = message_id_for(msg, self.settings)
        record = AttemptRecord(
            provider=relay,
            status="sent",
            started_at=now,
            finished_at=now,
            provider_message_id=message_id,
            error="handed to the relay before a dispatcher crash; not sent again",
        )
        return SendResult([record], relay, message_id)

    async def send(self, msg: EmailDelivery, claim: Claimed) -> SendResult:
        started = utcnow()
        attachments: list[tuple[Attachment, bytes]] = []
        for att in msg.attachments:
            data = await asyncio.to_thread(
                read_attachment, self.settings.reports_dir, att, self.settings.max_attachment_bytes
            )
            attachments.append((att, data))
        message = render_message(msg, self.settings, attachments)
        if self.bucket is not None:
            try:
                await self.bucket.acquire()
            except RateLimited as exc:
                raise TransientError(str(exc), retry_after_secs=exc.wait_secs) from exc
        provider, _reply = await self.smtp.send(
            message.data,
            self.settings.email_from,
            [msg.to],
            functools.partial(self.store.hand_over, msg.delivery_id, claim),
        )
        record = AttemptRecord(
            provider=provider,
            status="sent",
            started_at=started,
            finished_at=utcnow(),
            provider_message_id=message.message_id,
            error=None,
        )
        return SendResult([record], provider, message.message_id)

    async def close(self) -> None:
        await self.smtp.close()
