"""Unit tests of the shared plumbing: settings, logging, topology helpers, messages."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from avisos_common import logging as avisos_logging
from avisos_common import topology
from avisos_common.amqp import backoff_secs
from avisos_common.messages import (
    FANOUT_CHUNK_RECIPIENTS,
    PRIORITIES,
    EmailDelivery,
    NotificationContent,
    NotificationCreated,
    NotificationsCreated,
    Recipient,
    SmsDelivery,
    UnreadCount,
    delivery_adapter,
    lane_for,
    realtime_adapter,
)
from avisos_common.settings import ServiceSettings


class _Svc(ServiceSettings):
    token: SecretStr = SecretStr("dev-only-default-token-not-for-production")
    secret_fields: tuple[str, ...] = ("token",)


def test_settings_fail_fast_on_placeholders_outside_dev() -> None:
    assert _Svc(env="dev").token
    for bad in ("", "changeme", "x" * 10, "dev-ticket-secret-not-for-production-xxxxxxx"):
        with pytest.raises(ValidationError, match="AVISOS_TOKEN"):
            _Svc(env="prod", token=SecretStr(bad))
    assert _Svc(env="prod", token=SecretStr("r" * 40)).token


def test_database_url_forms() -> None:
    s = _Svc(database_url="postgresql+asyncpg://u@h/db")
    assert s.asyncpg_dsn == "postgresql://u@h/db"
    assert s.sqlalchemy_url == "postgresql+asyncpg://u@h/db"


def test_json_logs_carry_bound_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(avisos_logging.JsonFormatter("svc"))
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with avisos_logging.bind(request_id="r-1", queue="q", message_id="m-1"):
        log.info("hello %s", "world", extra={"notification_id": "n-1"})
    log.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "hello world" and first["service"] == "svc"
    assert (first["request_id"], first["queue"], first["message_id"]) == ("r-1", "q", "m-1")
    assert first["notification_id"] == "n-1"
    assert "request_id" not in second
    with pytest.raises(KeyError), avisos_logging.bind(nope="x"):
        pass


def test_delay_buckets_and_backoff() -> None:
    assert topology.delay_bucket(0.2) == 1
    assert topology.delay_bucket(7) == 15
    assert topology.delay_bucket(10_000) == topology.RETRY_DELAYS_SECS[-1]
    for attempt in range(1, 10):
        b = backoff_secs(attempt, 1.0, cap=60)
        ceiling = min(60, 2 ** (attempt - 1))
        assert ceiling / 2 <= b <= ceiling


def test_every_work_queue_has_a_dead_letter_exchange_and_delivery_limit() -> None:
    specs = topology.work_queues()
    assert {s.name for s in specs} >= {
        topology.QUEUE_INGEST,
        topology.QUEUE_REPORTS,
        "avisos.dispatch.email.urgent",
        "avisos.dispatch.sms.normal",
        "avisos.dispatch.push.urgent",
    }
    for spec in specs:
        assert spec.arguments["x-dead-letter-exchange"] == topology.EXCHANGE_DEAD
        assert spec.arguments["x-delivery-limit"] == topology.DELIVERY_LIMIT
        assert spec.arguments["x-queue-type"] == "quorum"


def test_messages_are_strict_and_versioned() -> None:
    uid = uuid.uuid4()
    email = EmailDelivery(delivery_id=uuid.uuid4(), user_id=uid, to="a@b.c", subject="s", text="t")
    parsed = delivery_adapter.validate_json(email.model_dump_json())
    assert isinstance(parsed, EmailDelivery) and parsed == email
    with pytest.raises(ValidationError):
        delivery_adapter.validate_json(email.model_dump_json().replace('"s"', '"s","bcc":"x"', 1))
    with pytest.raises(ValidationError):
        SmsDelivery(delivery_id=uuid.uuid4(), user_id=uid, to="600111222", body="x")
    bad_version = json.loads(email.model_dump_json()) | {"schema_version": 2}
    with pytest.raises(ValidationError):
        delivery_adapter.validate_python(bad_version)
    with pytest.raises(ValidationError):
        realtime_adapter.validate_python({"kind": "unknown"})
    assert lane_for("critical") == lane_for("high") == "urgent"
    assert lane_for("low") == lane_for("normal") == "normal"
    assert NotificationCreated.model_fields["kind"].default == "notification.created"


def test_one_notification_to_many_recipients() -> None:
    content = NotificationContent(
        type="stock.low",
        category="inventory",
        subject="s",
        message="m",
        priority="normal",
        created_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
    )
    unread = UnreadCount(total=1, by_priority=dict.fromkeys(PRIORITIES, 0))

    def recipients(n: int) -> list[Recipient]:
        return [
            Recipient(user_id=uuid.uuid4(), notification_id=uuid.uuid4(), seq=i + 1, unread=unread)
            for i in range(n)
        ]

    msg = NotificationsCreated(notification=content, recipients=recipients(3))
    again = realtime_adapter.validate_json(msg.model_dump_json())
    assert again == msg
    r = msg.recipients[2]
    payload = msg.payload_for(r)
    assert (payload.id, payload.seq, payload.recipient_id) == (r.notification_id, 3, r.user_id)
    assert payload.subject == "s" and payload.created_at == content.created_at
    assert payload.content() == content  # the shared part back, whoever it was for
    with pytest.raises(ValidationError):  # nobody to tell
        NotificationsCreated(notification=content, recipients=[])
    with pytest.raises(ValidationError):  # the API splits bigger audiences into chunks
        NotificationsCreated(
            notification=content, recipients=recipients(FANOUT_CHUNK_RECIPIENTS + 1)
        )


class _Provider(ServiceSettings):
    smtp_password: SecretStr | None = None
    credential_fields: tuple[str, ...] = ("smtp_password",)


def test_provider_credentials_need_a_value_not_a_length() -> None:
    assert _Provider(env="prod", smtp_password=SecretStr("abcd efgh ijkl mnop")).smtp_password
    for bad in (None, "", "changeme"):
        with pytest.raises(ValidationError, match="AVISOS_SMTP_PASSWORD"):
            _Provider(env="prod", smtp_password=SecretStr(bad) if bad is not None else None)
