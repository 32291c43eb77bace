"""Delivery log endpoints, the Twilio status webhook and dead-letter admin (API side)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import aio_pika
import pytest
from sqlalchemy import text

from avisos_api.api.deps import AppState
from avisos_api.api.routes.webhooks import TwilioWebhookSettings
from avisos_common import topology
from avisos_testkit.infra import Backing
from avisos_testkit.twilio_standin import SentSms, TwilioStandIn

WEBHOOK = "http://testserver/v1/webhooks/twilio/status"


async def _delivery(
    state: AppState,
    user_id: uuid.UUID,
    *,
    channel: str = "sms",
    notification_id: uuid.UUID | None = None,
    sid: str | None = None,
    statuses: tuple[str, ...] = ("sent",),
) -> uuid.UUID:
    did = uuid.uuid4()
    async with state.sessionmaker() as s:
        await s.execute(
            text(
                "INSERT INTO deliveries (delivery_id, channel, notification_id, user_id, status,"
                " provider, provider_message_id, attempts) VALUES (:d, :c, :n, :u, :st, 'twilio',"
                " :sid, :a)"
            ),
            {
                "d": did,
                "c": channel,
                "n": notification_id,
                "u": user_id,
                "st": statuses[-1],
                "sid": sid,
                "a": len(statuses),
            },
        )
        for i, st in enumerate(statuses, 1):
            await s.execute(
                text(
                    "INSERT INTO delivery_attempts (delivery_id, channel, notification_id, user_id,"
                    " provider, provider_message_id, status, attempt, finished_at, latency_ms)"
                    " VALUES (:d, :c, :n, :u, 'twilio', :sid, :st, :a, now(), 12)"
                ),
                {
                    "d": did,
                    "c": channel,
                    "n": notification_id,
                    "u": user_id,
                    "sid": sid,
                    "st": st,
                    "a": i,
                },
            )
        await s.commit()
    return did


async def _notification(state: AppState, user_id: uuid.UUID) -> uuid.UUID:
    nid = uuid.uuid4()
    async with state.sessionmaker() as s:
        seq = await s.scalar(
            text(
                "UPDATE users SET notification_seq = notification_seq + 1 WHERE id = :u"
                " RETURNING notification_seq"
            ),
            {"u": user_id},
        )
        await s.execute(
            text(
                "INSERT INTO notifications (id, recipient_id, seq, type, category, subject,"
                " message, priority, data) VALUES (:i, :u, :s, 'stock.low', 'stock', 'S', 'M',"
                " 'normal', '{}')"
            ),
            {"i": nid, "u": user_id, "s": seq},
        )
        await s.commit()
    return nid


async def test_twilio_status_callback_signed_accepted_forged_refused(people, anon, state) -> None:
    twilio = TwilioStandIn()  # only its signing is used; no server needed
    state.extras["twilio_webhook"] = TwilioWebhookSettings(
        env="test", twilio_auth_token=twilio.auth_token, twilio_status_callback_url=WEBHOOK
    )
    person = await people.create(login=False)
    sid = "SM" + uuid.uuid4().hex
    did = await _delivery(state, person.id, sid=sid)
    sms = SentSms(sid, "+34611111111", "+15005550006", "hola", WEBHOOK)

    url, params, headers = twilio.status_callback_request(sms, "delivered", forge=True)
    r = await anon.post(url, data=params, headers=headers)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await anon.post(url, data=params)  # no signature at all
    assert r.status_code == 403
    # A signature over other parameters (tampered status) is refused too.
    url, params, headers = twilio.status_callback_request(sms, "delivered")
    r = await anon.post(url, data={**params, "MessageStatus": "failed"}, headers=headers)
    assert r.status_code == 403

    r = await anon.post(url, data=params, headers=headers)
    assert r.status_code == 204, r.text
    r = await anon.post(url, data=params, headers=headers)  # Twilio retries: recorded once
    assert r.status_code == 204
    async with state.sessionmaker() as s:
        rows = (
            (
                await s.execute(
                    text("SELECT status FROM delivery_attempts WHERE delivery_id = :d ORDER BY id"),
                    {"d": did},
                )
            )
            .scalars()
            .all()
        )
        status = await s.scalar(
            text("SELECT status FROM deliveries WHERE delivery_id = :d"), {"d": did}
        )
    assert list(rows) == ["sent", "delivered"] and status == "delivered"

    url, params, headers = twilio.status_callback_request(sms, "undelivered", error_code="30003")
    assert (await anon.post(url, data=params, headers=headers)).status_code == 204
    async with state.sessionmaker() as s:
        err = await s.scalar(
            text(
                "SELECT error FROM delivery_attempts WHERE delivery_id = :d AND status ="
                " 'undelivered'"
            ),
            {"d": did},
        )
    assert err == "twilio reported undelivered (error 30003)"


async def test_delivery_log_visibility_and_pagination(people, state) -> None:
    owner = await people.create()
    other = await people.create()
    admin = await people.create(roles=["admin"])
    nid = await _notification(state, owner.id)
    await _delivery(state, owner.id, notification_id=nid, statuses=("failed", "sent"))
    await _delivery(state, owner.id, channel="email", notification_id=nid)
    await _delivery(state, other.id)

    r = await owner.client.get(f"/v1/notifications/{nid}/deliveries")
    assert r.status_code == 200
    assert sorted(i["status"] for i in r.json()["items"]) == ["failed", "sent", "sent"]
    assert (await other.client.get(f"/v1/notifications/{nid}/deliveries")).status_code == 404
    assert (await admin.client.get(f"/v1/notifications/{nid}/deliveries")).status_code == 200

    mine = (await owner.client.get("/v1/me/deliveries")).json()["items"]
    assert {i["user_id"] for i in mine} == {str(owner.id)} and len(mine) == 3
    only_email = (await owner.client.get("/v1/me/deliveries?channel=email")).json()["items"]
    assert [i["channel"] for i in only_email] == ["email"]

    assert (await owner.client.get("/v1/admin/deliveries")).status_code == 403
    seen: list[int] = []
    cursor = ""
    for _ in range(10):
        r = await admin.client.get(
            f"/v1/admin/deliveries?user_id={owner.id}&limit=2&cursor={cursor}"
        )
        assert r.status_code == 200
        page = r.json()
        seen += [i["id"] for i in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
    failed = (
        await admin.client.get(f"/v1/admin/deliveries?user_id={owner.id}&status=failed")
    ).json()["items"]
    assert [i["status"] for i in failed] == ["failed"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = await admin.client.get("/v1/admin/deliveries", params={"since": future})
    assert r.json()["items"] == []


async def test_dead_letters_recorded_listed_and_replayed(people, state, backing: Backing) -> None:
    admin = await people.create(roles=["admin"])
    staff = await people.create()
    conn = await aio_pika.connect_robust(backing.amqp_url)
    try:
        ch = await conn.channel()
        origin = f"test.replay.{uuid.uuid4().hex[:8]}"
        q = await ch.declare_queue(origin, auto_delete=True)
        mid = uuid.uuid4().hex
        dead = await ch.get_exchange(topology.EXCHANGE_DEAD)
        await dead.publish(
            aio_pika.Message(
                b'{"delivery_id": "00000000-0000-0000-0000-000000000000", "x": 1}',
                message_id=mid,
                content_type="application/json",
                headers={
                    topology.HEADER_REASON: "gave up after 6 attempts: twilio 500",
                    topology.HEADER_ORIGIN_QUEUE: origin,
                    topology.HEADER_ATTEMPT: 6,
                },
            ),
            routing_key="",
        )
        item = None
        for _ in range(100):
            r = await admin.client.get(f"/v1/admin/dead-letters?queue={origin}")
            assert r.status_code == 200
            if r.json()["items"]:
                item = r.json()["items"][0]
                break
            await asyncio.sleep(0.1)
        assert item is not None, "the recorder did not record the dead letter"
        assert item["message_id"] == mid and "twilio 500" in item["reason"]
        assert (await staff.client.get("/v1/admin/dead-letters")).status_code == 403
        assert (
            await staff.client.post(f"/v1/admin/dead-letters/{item['id']}/replay")
        ).status_code == 403

        r = await admin.client.post(f"/v1/admin/dead-letters/{item['id']}/replay")
        assert r.status_code == 200, r.text
        assert r.json()["replay_count"] == 1
        msg = None
        for _ in range(100):
            msg = await q.get(no_ack=True, fail=False)
            if msg is not None:
                break
            await asyncio.sleep(0.1)
        assert msg is not None, "replay was not published"
        assert msg.message_id == mid
        assert msg.body.startswith(b'{"delivery_id"')
        assert msg.headers[topology.HEADER_ATTEMPT] == 1
        assert topology.HEADER_REASON not in msg.headers
        r = await admin.client.post("/v1/admin/dead-letters/999999999/replay")
        assert r.status_code == 404
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _reset_webhook(state: AppState):  # type: ignore[no-untyped-def]
    yield
    state.extras.pop("twilio_webhook", None)
