"""Email through the real SMTP server: MIME shape, attachments, injection, idempotency,
fail-over and permanent refusals."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from dispatch_kit import DeadLetters, RunDispatcher, attempts, final_status, publish

from avisos_common.amqp import Publisher
from avisos_common.messages import Attachment, EmailDelivery
from avisos_testkit.polling import eventually
from avisos_testkit.smtp import SmtpSink

INJECTION_SUBJECT = "Stock low =?UTF-8?Q?=0A?=Bcc: evil@attacker.test\r\nX-Injected: 1"
INJECTION_NAME = "=?UTF-8?Q?a=0D=0A?=Bcc: evil2@attacker.test\nCc: evil3@attacker.test"


async def test_email_multipart_attachment_and_no_injection(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    smtp_sink: SmtpSink,
    reports_dir: Path,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    (reports_dir / "2026").mkdir(exist_ok=True)
    (reports_dir / "2026" / "stock.xlsx").write_bytes(b"PK\x03\x04fake-xlsx-bytes")
    await run_dispatcher(channels=["email"])
    smtp_sink.clear()
    msg = EmailDelivery(
        delivery_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        user_id=user,
        priority="high",
        to="ana@example.test",
        to_name=INJECTION_NAME,
        subject=INJECTION_SUBJECT,
        text="Plain body ñ",
        html="<p>HTML body <b>ñ</b></p>",
        attachments=[
            Attachment(
                filename="stock.xlsx",
                content_type=("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                storage_key="2026/stock.xlsx",
            )
        ],
    )
    await publish(publisher, msg, "email")
    [received] = await smtp_sink.await_count(1)
    assert received.rcpt_tos == ["ana@example.test"]
    assert received.mail_from == "avisos@example.test"
    parsed = received.parse()
    names = sorted(k.lower() for k in parsed)
    assert names == sorted(
        [
            "subject",
            "from",
            "to",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "auto-submitted",
            "x-avisos-delivery",
        ]
    )
    assert "bcc" not in names and "cc" not in names and "x-injected" not in names
    assert "\n" not in str(parsed["Subject"]) and "evil" not in str(
        parsed["To"].addresses[0].addr_spec
    )
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ana@example.test"]
    assert parsed["Message-ID"] == f"<{msg.delivery_id}@avisos.local>"
    body_text = parsed.get_body(preferencelist=("plain",))
    body_html = parsed.get_body(preferencelist=("html",))
    assert body_text is not None and "Plain body ñ" in body_text.get_content()
    assert body_html is not None and "<b>ñ</b>" in body_html.get_content()
    [att] = list(parsed.iter_attachments())
    assert att.get_filename() == "stock.xlsx"
    assert att.get_content() == b"PK\x03\x04fake-xlsx-bytes"

    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent" and row["provider"] == "smtp:primary"
    [attempt] = await attempts(db, msg.delivery_id)
    assert attempt["status"] == "sent" and attempt["attempt"] == 1
    assert attempt["latency_ms"] is not None and attempt["finished_at"] >= attempt["started_at"]


async def test_redelivered_email_is_not_sent_twice(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    smtp_sink: SmtpSink,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    d = await run_dispatcher(channels=["email"])
    smtp_sink.clear()
    msg = EmailDelivery(
        delivery_id=uuid.uuid4(), user_id=user, to="bo@example.test", subject="s", text="t"
    )
    await publish(publisher, msg, "email")
    await final_status(db, msg.delivery_id)
    # The same delivery again (a redelivery after a crash, or a duplicate publish).
    await publish(publisher, msg, "email")
    handler = d.handlers[0]
    await eventually(lambda: handler.duplicates_skipped >= 1, what="duplicate skipped")
    assert len([m for m in smtp_sink.messages if m.rcpt_tos == ["bo@example.test"]]) == 1
    assert len(await attempts(db, msg.delivery_id)) == 1


async def test_fails_over_to_the_fallback_relay(
    run_dispatcher: RunDispatcher, publisher: Publisher, db: asyncpg.Pool, user: uuid.UUID
) -> None:
    with SmtpSink() as primary, SmtpSink() as fallback:
        primary.down()  # the primary relay refuses connections
        await run_dispatcher(
            channels=["email"],
            smtp_port=primary.port,
            smtp_fallback_host="127.0.0.1",
            smtp_fallback_port=fallback.port,
        )
        msg = EmailDelivery(
            delivery_id=uuid.uuid4(), user_id=user, to="cy@example.test", subject="s", text="t"
        )
        await publish(publisher, msg, "email")
        [received] = await fallback.await_count(1)
        assert received.rcpt_tos == ["cy@example.test"]
        row = await final_status(db, msg.delivery_id)
        assert row["status"] == "sent" and row["provider"] == "smtp:fallback"


async def test_refused_recipient_fails_at_once_and_is_dead_lettered(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    smtp_sink: SmtpSink,
    db: asyncpg.Pool,
    user: uuid.UUID,
    dead_letters: DeadLetters,
) -> None:
    smtp_sink.refuse_recipients.add("nobody@example.test")
    await run_dispatcher(channels=["email"])
    msg = EmailDelivery(
        delivery_id=uuid.uuid4(), user_id=user, to="nobody@example.test", subject="s", text="t"
    )
    await publish(publisher, msg, "email")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "failed" and "550" in row["last_error"]
    reasons = await eventually(
        lambda: _reasons(dead_letters, str(msg.message_id)), what="dead letter"
    )
    assert "550" in reasons[0]
    rows = await attempts(db, msg.delivery_id)
    assert [r["status"] for r in rows] == ["failed"]  # no retry


async def _reasons(dl: DeadLetters, message_id: str) -> list[str]:
    return list(dl.reasons_for(message_id))


async def test_invalid_address_is_permanent(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    db: asyncpg.Pool,
    user: uuid.UUID,
    dead_letters: DeadLetters,
) -> None:
    await run_dispatcher(channels=["email"])
    msg = EmailDelivery(
        delivery_id=uuid.uuid4(),
        user_id=user,
        to="a@b.test>\r\nRCPT TO:<x@evil.test",
        subject="s",
        text="t",
    )
    await publish(publisher, msg, "email")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "failed" and row["last_error"] == "invalid email address"
