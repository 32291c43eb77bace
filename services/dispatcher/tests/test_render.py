"""The email composer on its own (no servers): what a mail client parses back from the bytes
``render_message`` produces, and the header-injection defences."""

from __future__ import annotations

import email
import email.policy
import uuid
from email.message import EmailMessage
from typing import Any

import pytest

from avisos_common.messages import Attachment, EmailDelivery
from avisos_dispatcher.email import MAX_HEADER_LINE_CHARS, render_message
from avisos_dispatcher.errors import PermanentError
from avisos_dispatcher.settings import DispatcherSettings

SETTINGS = DispatcherSettings(_env_file=None, env="test", email_from_name="Avisos ñ")  # type: ignore[call-arg]


def _delivery(**fields: Any) -> EmailDelivery:
    base: dict[str, Any] = {
        "delivery_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "to": "ana@example.test",
        "subject": "Stock bajo",
        "text": "Quedan 3",
    }
    return EmailDelivery(**{**base, **fields})


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_plain_text_only() -> None:
    d = _delivery(text="Plain ñ")
    out = render_message(d, SETTINGS, [])
    assert out.message_id == f"<{d.delivery_id}@avisos.local>"
    assert b"\r\n" in out.data and b"\n" not in out.data.replace(b"\r\n", b"")
    out.data.decode("ascii")  # 7-bit
    msg = _parse(out.data)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Plain ñ"
    assert msg["Message-ID"] == out.message_id
    assert msg["X-Avisos-Delivery"] == str(d.delivery_id)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert str(msg["From"]) == "Avisos ñ <avisos@localhost>"
    assert not msg.defects


def test_alternative_and_attachments_read_back() -> None:
    d = _delivery(
        subject="Notificación " * 30,
        html="<p>HTML <b>ñ</b></p>",
        attachments=[
            Attachment(filename='infórme "x".pdf', content_type="Application/PDF", storage_key="a"),
            Attachment(filename="a/b\\" + "c" * 190 + ".csv", content_type="nope", storage_key="b"),
        ],
    )
    out = render_message(d, SETTINGS, [(d.attachments[0], b"%PDF"), (d.attachments[1], b"x" * 999)])
    for line in out.data.split(b"\r\n"):
        # Headers fold to 78; only a single long token (file name) may be longer.
        assert len(line) <= MAX_HEADER_LINE_CHARS or b" " not in line.strip()
    msg = _parse(out.data)
    assert msg.get_content_type() == "multipart/mixed"
    assert str(msg["Subject"]) == ("Notificación " * 30)[:300]  # MAX_SUBJECT_CHARS
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and text.get_content() == "Quedan 3"
    assert html is not None and html.get_content() == "<p>HTML <b>ñ</b></p>"
    pdf, csv = list(msg.iter_attachments())
    assert (pdf.get_filename(), pdf.get_content_type(), pdf.get_content()) == (
        'infórme "x".pdf',
        "application/pdf",
        b"%PDF",
    )
    assert csv.get_filename() == "a_b_" + "c" * 190 + ".csv"
    assert csv.get_content_type() == "text/csv" and csv.get_content() == "x" * 999
    assert all(not part.defects for part in msg.walk())


INJECTIONS = [
    "x\r\nBcc: evil@attacker.test",
    "x\nBcc: evil@attacker.test",
    "x\rBcc: evil@attacker.test",
    "x\u2028Bcc: evil@attacker.test",
    "=?UTF-8?Q?=0A?=Bcc: evil@attacker.test",
    "=?UTF-8?Q?a=0D=0A?=Bcc: evil2@attacker.test\nCc: evil3@attacker.test",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_no_header_injection_through_subject_or_name(value: str) -> None:
    d = _delivery(subject=value, to_name=value)
    msg = _parse(render_message(d, SETTINGS, []).data)
    names = sorted(k.lower() for k in msg)
    assert "bcc" not in names and "cc" not in names
    assert [a.addr_spec for a in msg["To"].addresses] == ["ana@example.test"]
    assert "\n" not in str(msg["Subject"])


@pytest.mark.parametrize("to", ["a@b.test>\r\nRCPT TO:<x@evil.test", "A <a@b.test>", "a@b,c@d"])
def test_invalid_address_is_permanent(to: str) -> None:
    with pytest.raises(PermanentError, match="invalid email address"):
        render_message(_delivery(to=to), SETTINGS, [])


def test_lone_surrogate_in_body_does_not_fail_the_delivery() -> None:
    msg = _parse(render_message(_delivery(text="a\ud800b"), SETTINGS, []).data)
    assert msg.get_content() == "a?b"


@pytest.mark.parametrize("value", ["x\r\nBcc: evil@attacker.test", "x\nBcc: e", "x\r", "x\r\n"])
def test_header_check_catches_what_cleaning_would_miss(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence works on its own: with cleaning disabled, a line break in a
    header value fails the delivery instead of adding a header."""
    monkeypatch.setattr("avisos_dispatcher.email.clean_header_text", lambda v, limit: v)
    with pytest.raises(PermanentError, match="line break"):
        render_message(_delivery(subject=value), SETTINGS, [])
