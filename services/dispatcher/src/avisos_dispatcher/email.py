"""The email channel: safe MIME building and sending through the SMTP pool.

Header injection: Python's ``email`` package decodes RFC 2047 encoded words in header
values it is given (``=?UTF-8?Q?=0A?=Bcc: x`` becomes a real line break), so header
inputs are cleaned before they reach it: control characters (CR, LF, NUL, U+2028...) become
spaces and the ``=?`` that opens an encoded word is broken with a zero-width space. The
built message is then checked to have exactly the headers we set, none containing a line
break. Recipients never come from headers: ``send_message`` always gets them explicitly.
The ``to`` address itself must be a plain ``local@domain`` or the delivery fails permanently.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate
from pathlib import Path

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
_BARE_LINE_BREAK = re.compile(r"[\r\n](?![ \t])|\r(?!\n)")
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


def clean_header_text(value: str, limit: int) -> str:
    """Text safe to put in a header: no control characters, no encoded-word opener."""
    text = _CONTROL.sub(" ", value)
    text = text.replace(_ENCODED_WORD_START, "=" + _ZWSP + "?")
    return " ".join(text.split())[:limit]


def check_address(address: str) -> str:
    if len(address) > 254 or not _ADDRESS.match(address):
        raise PermanentError("invalid email address", provider="smtp")
    return address


def build_message(
    d: EmailDelivery, settings: DispatcherSettings, attachments: list[tuple[Attachment, bytes]]
) -> Message:
    """The MIME message for one delivery.

    Built with the ``compat32`` classes, which store header values as given instead of
    parsing (and decoding) them, and are several times cheaper than ``EmailMessage``;
    every header value is cleaned first and non-ASCII text is RFC 2047-encoded by us."""
    to = check_address(d.to)
    body: Message
    text_part = MIMEText(d.text, "plain", _UTF8)
    if d.html:
        body = MIMEMultipart("alternative")
        body.attach(text_part)
        body.attach(MIMEText(d.html, "html", _UTF8))
    else:
        body = text_part
    if attachments:
        root: Message = MIMEMultipart("mixed")
        root.attach(body)
        for att, data in attachments:
            ctype = att.content_type.lower()
            if not _CONTENT_TYPE.match(ctype):
                ctype = mimetypes.guess_type(att.filename)[0] or "application/octet-stream"
            maintype, subtype = ctype.split("/", 1)
            part = MIMEApplication(data, _subtype=subtype)
            if maintype != "application":
                part.replace_header("Content-Type", ctype)
            filename = clean_header_text(att.filename, 200).replace("/", "_").replace("\\", "_")
            name = filename or "file"
            part.add_header(
                "Content-Disposition",
                "attachment",
                filename=name if name.isascii() else ("utf-8", "", name),
            )
            root.attach(part)
    else:
        root = body
    root["Subject"] = _encode(clean_header_text(d.subject, MAX_SUBJECT_CHARS))
    root["From"] = formataddr(
        (clean_header_text(settings.email_from_name, MAX_NAME_CHARS), settings.email_from), "utf-8"
    )
    root["To"] = formataddr((clean_header_text(d.to_name, MAX_NAME_CHARS), to), "utf-8")
    root["Date"] = formatdate(localtime=False, usegmt=True)
    # Derived from the idempotency key: a copy sent again in the crash window carries the
    # same Message-ID, which mail clients use to collapse duplicates.
    root["Message-ID"] = f"<{d.delivery_id}@{settings.email_message_id_domain}>"
    root["Auto-Submitted"] = "auto-generated"
    root["X-Avisos-Delivery"] = str(d.delivery_id)
    _check_headers(root)
    return root


def _encode(text: str) -> str:
    """ASCII as is; anything else as RFC 2047 encoded words, folded (line break + space)
    so that no line exceeds the RFC 5322 limit."""
    if text.isascii():
        return text
    return Header(text, _UTF8).encode()


def _check_headers(msg: Message) -> None:
    """Defence in depth: the message has only our headers, none spanning lines."""
    for part in msg.walk():
        for name, value in part.items():
            # Only folding (a line break followed by whitespace) may appear in a value.
            if _BARE_LINE_BREAK.search(str(value)):
                raise PermanentError(f"header {name} would contain a line break")
    names = {k.lower() for k in msg}
    if not names <= EXPECTED_HEADERS:
        raise PermanentError(f"unexpected headers {sorted(names - EXPECTED_HEADERS)}")


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

    async def send(self, msg: EmailDelivery, claim: Claimed) -> SendResult:
        started = utcnow()
        attachments: list[tuple[Attachment, bytes]] = []
        for att in msg.attachments:
            data = await asyncio.to_thread(
                read_attachment, self.settings.reports_dir, att, self.settings.max_attachment_bytes
            )
            attachments.append((att, data))
        message = build_message(msg, self.settings, attachments)
        if self.bucket is not None:
            try:
                await self.bucket.acquire()
            except RateLimited as exc:
                raise TransientError(str(exc), retry_after_secs=exc.wait_secs) from exc
        provider, _reply = await self.smtp.send(message, self.settings.email_from, [msg.to])
        record = AttemptRecord(
            provider=provider,
            status="sent",
            started_at=started,
            finished_at=utcnow(),
            provider_message_id=str(message["Message-ID"]),
            error=None,
        )
        return SendResult([record], provider, str(message["Message-ID"]))

    async def close(self) -> None:
        await self.smtp.close()
