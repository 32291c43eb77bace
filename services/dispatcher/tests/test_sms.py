"""SMS through the real twilio client against the local Twilio stand-in."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg  # type: ignore[import-untyped]
from dispatch_kit import DeadLetters, RunDispatcher, attempts, final_status, publish

from avisos_common.amqp import Publisher
from avisos_common.messages import SmsDelivery
from avisos_testkit.polling import eventually
from avisos_testkit.twilio_standin import SentSms, TwilioStandIn


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


# --- a claim retaken from a dispatcher that died mid-send -------------------------------
# The dead dispatcher is simulated exactly: its 'sending' claim, expired, and (or not) the
# message Twilio accepted from it. test_faults kills a real one mid-batch.

DEAD_SENDER = "+15005550006"


async def _dead_claim(db: asyncpg.Pool, msg: SmsDelivery, claimed_secs_ago: float) -> None:
    await db.execute(
        "INSERT INTO deliveries (delivery_id, channel, user_id, status, attempts, claim_token,"
        " claimed_at) VALUES ($1, 'sms', $2, 'sending', 1, $3,"
        " now() - make_interval(secs => $4))",
        msg.delivery_id,
        msg.user_id,
        uuid.uuid4(),
        claimed_secs_ago,
    )


def _accepted_earlier(
    twilio: TwilioStandIn, msg: SmsDelivery, secs_ago: float, sender: str = DEAD_SENDER
) -> SentSms:
    """What Twilio holds when the dead dispatcher's request went through."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=secs_ago)
    sms = SentSms("SM" + uuid.uuid4().hex, msg.to, sender, msg.body, None, {}, created)
    twilio.messages.append(sms)
    return sms


def _sms(user: uuid.UUID, body: str = "Caducidad: lote L-7 vence mañana") -> SmsDelivery:
    return SmsDelivery(delivery_id=uuid.uuid4(), user_id=user, to=_number(), body=body)


async def test_retaken_claim_records_the_sms_twilio_already_accepted(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    d = await run_dispatcher(channels=["sms"])
    msg = _sms(user)
    await _dead_claim(db, msg, claimed_secs_ago=10)
    accepted = _accepted_earlier(twilio, msg, secs_ago=9)
    # Older messages to the same number, one with the same text: not this delivery's.
    _accepted_earlier(twilio, msg, secs_ago=3600)
    _accepted_earlier(twilio, msg.model_copy(update={"body": "otro"}), secs_ago=5)
    lists, before = twilio.list_requests, len(twilio.messages)
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent" and row["provider_message_id"] == accepted.sid
    assert row["attempts"] == 2
    assert len(twilio.messages) == before  # not sent again
    assert twilio.list_requests == lists + 1
    [attempt] = await attempts(db, msg.delivery_id)
    assert attempt["provider_message_id"] == accepted.sid and attempt["attempt"] == 2
    assert "not sent again" in attempt["error"]
    [handler] = d.handlers
    assert handler.reconciled == 1


async def test_retaken_claim_sends_when_twilio_has_none_of_ours(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["sms"])
    msg = _sms(user)
    await _dead_claim(db, msg, claimed_secs_ago=10)
    # Same number and text, but accepted long before the dead claim (an earlier alert):
    _accepted_earlier(twilio, msg, secs_ago=3600)
    # ...and since the claim, but from another sender (another app on the account):
    _accepted_earlier(twilio, msg, secs_ago=5, sender="+15005550001")
    # ...and since the claim, but already recorded by another delivery:
    other = _accepted_earlier(twilio, msg, secs_ago=5)
    await db.execute(
        "INSERT INTO deliveries (delivery_id, channel, user_id, status, provider,"
        " provider_message_id) VALUES ($1, 'sms', $2, 'sent', 'twilio', $3)",
        uuid.uuid4(),
        user,
        other.sid,
    )
    before = len(twilio.messages)
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent" and row["attempts"] == 2
    [sent] = twilio.messages[before:]
    assert row["provider_message_id"] == sent.sid and sent.body == msg.body


async def test_retaken_claim_waits_while_twilio_cannot_be_asked(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    twilio: TwilioStandIn,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    """Sending blind could duplicate a paid SMS: a failed look-up is a transient error."""
    await run_dispatcher(channels=["sms"])
    msg = _sms(user)
    await _dead_claim(db, msg, claimed_secs_ago=10)
    accepted = _accepted_earlier(twilio, msg, secs_ago=9)
    twilio.list_script[:] = [503]
    before = len(twilio.messages)
    await publish(publisher, msg, "sms")
    row = await final_status(db, msg.delivery_id, timeout_secs=30)
    assert row["status"] == "sent" and row["provider_message_id"] == accepted.sid
    assert len(twilio.messages) == before
    first, second = await attempts(db, msg.delivery_id)
    assert first["status"] == "failed" and "503" in first["error"]
    assert second["status"] == "sent" and second["provider_message_id"] == accepted.sid
