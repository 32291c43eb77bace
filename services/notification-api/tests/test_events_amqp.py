"""Inventory events over AMQP: real publishes to ``inventory.events`` on the test vhost,
consumed by the real ingest worker in the app's lifespan. Replays have one effect;
invalid events are dead-lettered with a reason while valid ones keep flowing."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

from avisos_api.api.deps import AppState
from avisos_api.events.schemas import EVENT_TYPES
from avisos_common.topology import EXCHANGE_DEAD, HEADER_REASON
from avisos_testkit.bus import BusTap
from avisos_testkit.infra import Backing
from avisos_testkit.polling import eventually

from .conftest import People
from .events_helpers import amqp_publish, envelope, inbox
from .test_events_http import EXPECTED


async def test_every_type_over_amqp(people: People, state: AppState, backing: Backing) -> None:
    store = await people.location()
    mgr_en = await people.create(roles=["manager"], locations=[store], locale="en")
    staff_es = await people.create(roles=["staff"], locations=[store], locale="es")
    outsider = await people.create(roles=["manager", "staff"], locations=[await people.location()])
    sent: dict[str, str] = {}
    for type_ in EVENT_TYPES:
        # stock.restored on its own SKU: events are consumed concurrently, so it must not
        # resolve the low/out alerts of this test before they are checked.
        extra = {"sku": "OTHER-SKU"} if type_ == "stock.restored" else {}
        env = envelope(type_, store, **extra)
        sent[type_] = env["id"]
        await amqp_publish(backing.amqp_url, env, routing_key=type_)

    def wanted(role: str) -> set[str]:
        return {t for t, (roles, _, _) in EXPECTED.items() if role in roles}

    async def arrived() -> bool:
        got_mgr = {n["type"] for n in await inbox(mgr_en)}
        got_staff = {n["type"] for n in await inbox(staff_es)}
        return got_mgr >= wanted("manager") and got_staff >= wanted("staff")

    await eventually(arrived, timeout_secs=10, what="notifications from AMQP events")
    # Every event was recorded once, as received over AMQP (restored included).
    async with state.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT type, received_via FROM events WHERE id = ANY(:ids)"),
                {"ids": list(sent.values())},
            )
        ).all()
    assert sorted(r.type for r in rows) == sorted(EVENT_TYPES)
    assert {r.received_via for r in rows} == {"amqp"}
    for n in await inbox(mgr_en):
        assert EXPECTED[n["type"]][2] in n["subject"]
        assert n["source_event_id"] == sent[n["type"]]
    for n in await inbox(staff_es):
        assert EXPECTED[n["type"]][1] in n["subject"]
    assert len(await inbox(mgr_en)) == len(wanted("manager"))
    assert len(await inbox(staff_es)) == len(wanted("staff"))
    assert await inbox(outsider) == []


async def test_replays_and_poison_do_not_block_or_duplicate(
    people: People, state: AppState, backing: Backing
) -> None:
    store = await people.location()
    mgr = await people.create(roles=["manager"], locations=[store])
    replayed = envelope("stock.low", store, sku=f"SKU-{uuid.uuid4().hex[:6]}")
    later = envelope("transfer.requested", store)
    bad_type = dict(envelope("stock.low", store), type="stock.vanished")
    bad_data = envelope("lot.expiring", store, expires_on="someday")
    mismatch = envelope("order.delayed", store)
    async with BusTap(backing.amqp_url, EXCHANGE_DEAD, "") as dead:
        for i in range(5):  # the producer's retries and broker redeliveries
            await amqp_publish(backing.amqp_url, replayed, "stock.low", message_id=f"m{i}")
        await amqp_publish(backing.amqp_url, bad_type, "stock.vanished")
        await amqp_publish(backing.amqp_url, b"{not json", "stock.low")
        await amqp_publish(backing.amqp_url, bad_data, "lot.expiring")
        await amqp_publish(backing.amqp_url, mismatch, "stock.out")
        await amqp_publish(backing.amqp_url, later, "transfer.requested")

        async def done() -> bool:
            types = [n["type"] for n in await inbox(mgr)]
            return "transfer.requested" in types and len(dead.messages) >= 4

        await eventually(
            done, timeout_secs=10, what="valid events applied and poison dead-lettered"
        )
        ours = [
            m
            for m in dead.messages
            if m.body == b"{not json"
            or json.loads(m.body).get("id") in {bad_type["id"], bad_data["id"], mismatch["id"]}
        ]
        reasons = sorted(str((m.headers or {})[HEADER_REASON]) for m in ours)
    assert len(reasons) == 4
    assert any("unknown event type 'stock.vanished'" in r for r in reasons)
    assert any("body is not JSON" in r for r in reasons)
    assert any("invalid data for lot.expiring: data.expires_on" in r for r in reasons)
    assert any("routing key 'stock.out' does not match" in r for r in reasons)
    items = await inbox(mgr)
    assert len([n for n in items if n["source_event_id"] == replayed["id"]]) == 1
    assert len([n for n in items if n["source_event_id"] == later["id"]]) == 1
    assert not [n for n in items if n["source_event_id"] in (bad_data["id"], mismatch["id"])]
