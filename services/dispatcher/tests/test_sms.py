"""SMS through the real twilio client against the local Twilio stand-in."""

from __future__ import annotations

import uuid

import asyncpg  # type: ignore[import-untyped]
from dispatch_kit import DeadLetters, RunDispatcher, attempts, final_status, publish

from avisos_common.amqp import Publisher
from avisos_common.messages import SmsDelivery
from avisos_testkit.polling import eventually
from avisos_testkit.twilio_standin import TwilioStandIn


def _number() -> str:
    return "+3461" + str(uuid.uuid4().int)[:7]


async def test_sms_sent_with_status_callback(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["sms"])
    to = _number()
    msg = SmsDelivery(delivery_id=uuid.uuid4(), user_id=user, to=to, body="Stock bajo: SKU 42")
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id)
    [sms] = [m for m in twilio.messages if m.to == to]
    assert row["status"] == "sent" and row["provider_message_id"] == sms.sid
    assert sms.sid.startswith("SM") and sms.body == "Stock bajo: SKU 42"
    assert sms.from_ == "+15005550006"
    assert sms.status_callback == "http://127.0.0.1:9/v1/webhooks/twilio/status"


async def test_500_500_then_201_sends_exactly_once(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["sms"])
    twilio.script[:] = [500, 500, 201]
    to = _number()
    msg = SmsDelivery(delivery_id=uuid.uuid4(), user_id=user, to=to, body="retry me")
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id, timeout_secs=30)
    assert row["status"] == "sent"
    assert len([m for m in twilio.messages if m.to == to]) == 1
    rows = await attempts(db, msg.delivery_id)
    assert [(r["status"], r["attempt"]) for r in rows] == [
        ("failed", 1),
        ("failed", 2),
        ("sent", 3),
    ]
    assert "500" in rows[0]["error"]


async def test_invalid_number_fails_without_retry(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
    dead_letters: DeadLetters,
) -> None:
    await run_dispatcher(channels=["sms"])
    to = _number()
    twilio.invalid_numbers.add(to)
    before = twilio.requests
    msg = SmsDelivery(delivery_id=uuid.uuid4(), user_id=user, to=to, body="x")
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "failed" and "21211" in row["last_error"]

    async def dead() -> list[str]:
        return list(dead_letters.reasons_for(str(msg.message_id)))

    assert "21211" in (await eventually(dead, what="dead letter"))[0]
    assert twilio.requests == before + 1
    assert len(await attempts(db, msg.delivery_id)) == 1


async def test_per_recipient_cap_stops_sending_without_retry(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
    dead_letters: DeadLetters,
) -> None:
    await run_dispatcher(channels=["sms"], sms_per_recipient_per_hour=2, concurrency=1)
    to = _number()
    msgs = [
        SmsDelivery(delivery_id=uuid.uuid4(), user_id=user, to=to, body=f"n{i}") for i in range(3)
    ]
    for m in msgs:
        await publish(publisher, m, "sms")
    rows = [await final_status(db, m.delivery_id) for m in msgs]
    assert sorted(r["status"] for r in rows) == ["failed", "sent", "sent"]
    [capped] = [r for r in rows if r["status"] == "failed"]
    assert "cap of 2 SMS per hour" in capped["last_error"]
    assert len([m for m in twilio.messages if m.to == to]) == 2
    assert not dead_letters.reasons_for(str(msgs[2].message_id))
    assert len(await attempts(db, capped["delivery_id"])) == 1


async def test_429_honours_retry_after(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["sms"])
    twilio.script[:] = [(429, 20429, 1)]
    to = _number()
    msg = SmsDelivery(delivery_id=uuid.uuid4(), user_id=user, to=to, body="later")
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent" and row["attempts"] == 2
    rows = await attempts(db, msg.delivery_id)
    assert "429" in rows[0]["error"]
