"""Web Push (our RFC 8291 encryption, py_vapid signing) to a local push service that
verifies VAPID and decrypts; 410 removes the subscription; payloads are kept under 4 KB."""

from __future__ import annotations

import time
import uuid

import asyncpg  # type: ignore[import-untyped]
from dispatch_kit import RunDispatcher, attempts, final_status, publish, subscribe

from avisos_common.amqp import Publisher
from avisos_common.messages import PushDelivery
from avisos_testkit.push_service import PushService


async def test_push_is_vapid_signed_and_decrypts(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    push_service: PushService,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["push"])
    subs = [push_service.new_subscription() for _ in range(2)]
    for s in subs:
        await subscribe(db, user, s)
    ids = {PushService.subscription_id(s["endpoint"]) for s in subs}
    before = len(push_service.received)
    msg = PushDelivery(
        delivery_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        user_id=user,
        priority="critical",
        title="Rotura de stock",
        body="SKU 42 en tienda 7",
        url="/n/1",
        tag="sku-42",
    )
    await publish(publisher, msg, "push")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent"
    got = [r for r in (await push_service.await_count(before + 2)) if r.subscription_id in ids]
    assert len(got) == 2
    for r in got:
        assert r.payload is not None
        assert r.payload["title"] == "Rotura de stock" and r.payload["body"] == "SKU 42 en tienda 7"
        assert r.payload["delivery_id"] == str(msg.delivery_id)
        assert r.headers["ttl"] == "86400" and r.headers["urgency"] == "high"
        assert len(r.headers["topic"]) <= 32
        assert r.claims is not None and r.claims["sub"] == "mailto:ops@example.test"
        assert r.claims["exp"] <= time.time() + 24 * 3600
    rows = await attempts(db, msg.delivery_id)
    assert sorted(r["status"] for r in rows) == ["sent", "sent"]


async def test_gone_subscription_is_removed(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    push_service: PushService,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["push"])
    live, dead = push_service.new_subscription(), push_service.new_subscription()
    await subscribe(db, user, live)
    dead_id = await subscribe(db, user, dead)
    push_service.gone.add(PushService.subscription_id(dead["endpoint"]))
    msg = PushDelivery(delivery_id=uuid.uuid4(), user_id=user, title="t", body="b", priority="low")
    await publish(publisher, msg, "push")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent"
    assert await db.fetchval("SELECT count(*) FROM push_subscriptions WHERE id = $1", dead_id) == 0
    rows = await attempts(db, msg.delivery_id)
    assert sorted(r["status"] for r in rows) == ["failed", "sent"]
    assert any("410" in (r["error"] or "") for r in rows)

    # Only gone subscriptions left: failed, not retried.
    only_dead = push_service.new_subscription()
    other_user = user
    await db.execute("DELETE FROM push_subscriptions WHERE user_id = $1", other_user)
    await subscribe(db, other_user, only_dead)
    push_service.gone.add(PushService.subscription_id(only_dead["endpoint"]))
    msg2 = PushDelivery(delivery_id=uuid.uuid4(), user_id=other_user, title="t", body="b")
    await publish(publisher, msg2, "push")
    row2 = await final_status(db, msg2.delivery_id)
    assert row2["status"] == "failed" and "gone" in row2["last_error"]
    assert (
        await db.fetchval("SELECT count(*) FROM push_subscriptions WHERE user_id = $1", other_user)
        == 0
    )


async def test_large_body_truncated_to_fit(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    push_service: PushService,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["push"])
    sub = push_service.new_subscription()
    await subscribe(db, user, sub)
    before = len(push_service.received)
    msg = PushDelivery(delivery_id=uuid.uuid4(), user_id=user, title="big", body="ñ€😀" * 2000)
    await publish(publisher, msg, "push")
    row = await final_status(db, msg.delivery_id)
    assert row["status"] == "sent"
    [r] = [x for x in (await push_service.await_count(before + 1))[before:]]
    assert r.size <= 4096 and r.payload is not None
    assert r.payload["body"].endswith("\u2026") and r.payload["body"].startswith("ñ€😀")
    assert r.headers["ttl"] == "43200" and r.headers["urgency"] == "normal"


async def test_push_retries_transient_failures_without_duplicates(
    run_dispatcher: RunDispatcher,
    publisher: Publisher,
    push_service: PushService,
    db: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    await run_dispatcher(channels=["push"], concurrency=1)
    sub = push_service.new_subscription()
    await subscribe(db, user, sub)
    sid = PushService.subscription_id(sub["endpoint"])
    push_service.script[:] = [500, 500]
    msg = PushDelivery(delivery_id=uuid.uuid4(), user_id=user, title="t", body="retry")
    await publish(publisher, msg, "push")
    row = await final_status(db, msg.delivery_id, timeout_secs=30)
    assert row["status"] == "sent" and row["attempts"] == 3
    assert len([r for r in push_service.received if r.subscription_id == sid]) == 1
