"""Stateful alerts: updated in place and resolved; team claims; escalation of critical
alerts nobody claims (driven by an explicit clock, no sleeps)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import text

from avisos_api.api.deps import AppState
from avisos_api.events.background import escalate_once, run_escalation
from avisos_api.services import users
from avisos_testkit.polling import eventually

from .conftest import People, Person
from .events_helpers import (
    deliveries,
    envelope,
    inbox,
    post,
    publisher,
    realtime,
    set_user,
)


def _only(items: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [n for n in items if all(n.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(n["type"], n["subject"]) for n in items])
    return found[0]


async def test_low_low_low_restored_is_one_alert_updated_then_resolved(
    people: People, state: AppState
) -> None:
    store = await people.location()
    ana = await people.create(roles=["manager"], locations=[store], locale="es")
    ben = await people.create(roles=["manager"], locations=[store], locale="en")
    pub = await publisher(people)
    sku = f"SKU-{uuid.uuid4().hex[:6]}"
    first = await post(pub, envelope("stock.low", store, sku=sku, quantity=4))
    n0 = _only(await inbox(ana), type="stock.low")
    assert n0["data"]["alert"]["state"] == "open" and n0["data"]["alert"]["quantity"] == 4
    for qty in (3, 2):
        res = await post(pub, envelope("stock.low", store, sku=sku, quantity=qty))
        assert res["alert_id"] == first["alert_id"] and res["notifications"] == 2
        n = _only(await inbox(ana), type="stock.low")
        assert n["id"] == n0["id"] and f"Quedan {qty} uds" in n["message"]
        assert n["data"]["alert"]["quantity"] == qty and n["data"]["quantity"] == qty
    mid = _only(await inbox(ben), type="stock.low")
    assert mid["subject"].startswith("Low stock") and "2 uds of" in mid["message"]

    res = await post(pub, envelope("stock.restored", store, sku=sku, quantity=50))
    assert res["alert_id"] == first["alert_id"] and res["alert_state"] == "resolved"
    for person, word in ((ana, "Repuesto"), (ben, "Restocked")):
        n = _only(await inbox(person), type="stock.low")
        alert = n["data"]["alert"]
        assert alert["state"] == "resolved" and alert["resolved_at"] and alert["quantity"] == 50
        assert alert["sku"] == sku and alert["location_code"] == store
        assert alert["condition"] == "stock.low" and alert["opened_at"]
        assert n["subject"].startswith(word) and n["updated_at"]
        assert n["data"]["quantity"] == 2  # the last low reading, kept for context
    final = _only(await inbox(ana), type="stock.low")
    assert final["seq"] == n0["seq"] + 3  # created, updated twice, resolved
    kinds = [m["kind"] for m in await realtime(state, ana.id)]
    assert kinds == ["notification.created"] + ["notification.updated"] * 3
    async with state.sessionmaker() as s:
        row = (
            await s.execute(
                text(
                    "SELECT state, event_count, quantity, resolved_at, escalation_level "
                    "FROM alerts WHERE sku = :sku"
                ),
                {"sku": sku},
            )
        ).one()
    assert (row.state, row.event_count, row.quantity) == ("resolved", 4, 50)
    # A new low after the resolution opens a new alert.
    again = await post(pub, envelope("stock.low", store, sku=sku, quantity=1))
    assert again["alert_id"] != first["alert_id"]
    assert len([n for n in await inbox(ana) if n["type"] == "stock.low"]) == 2


async def _ack(person: Person, nid: str) -> Any:
    return await person.client.post(f"/v1/notifications/{nid}/acknowledge")


async def test_first_acknowledger_takes_it_and_escalation_stops(
    people: People, state: AppState
) -> None:
    store = await people.location()
    ana = await people.create(roles=["manager"], locations=[store])
    bob = await people.create(roles=["manager"], locations=[store], locale="en")
    stranger = await people.create(roles=["manager"], locations=[await people.location()])
    pub = await publisher(people)
    await post(pub, envelope("lot.expiring", store, sku=f"Y-{uuid.uuid4().hex[:6]}"))
    mine = _only(await inbox(ana), type="lot.expiring")
    bobs = _only(await inbox(bob), type="lot.expiring")
    assert mine["priority"] == "critical" and mine["category"] == "expiry"

    assert (await _ack(stranger, mine["id"])).status_code == 404
    r = await _ack(ana, mine["id"])
    assert r.status_code == 200, r.text
    assert r.json()["data"]["alert"]["acknowledged_by"] == str(ana.id)
    seen = _only(await inbox(bob), type="lot.expiring")
    assert seen["seq"] > bobs["seq"]
    assert seen["data"]["alert"]["acknowledged_by_name"] == ana.email.split("@")[0]
    assert f"Handled by {ana.email.split('@')[0]}" in seen["message"]
    r = await _ack(bob, bobs["id"])
    assert r.status_code == 409
    problem = r.json()
    assert problem["acknowledged_by"] == str(ana.id)
    assert problem["acknowledged_by_name"] == ana.email.split("@")[0]
    assert "already handled by" in problem["detail"]
    assert (await _ack(ana, mine["id"])).status_code == 200  # idempotent for the holder

    await escalate_once(state, dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
    for person in (ana, bob):
        assert [n for n in await inbox(person) if n["type"] == "alert.escalated"] == []


async def test_claiming_a_team_event_without_alert(people: People) -> None:
    store = await people.location()
    ana = await people.create(roles=["staff"], locations=[store])
    bob = await people.create(roles=["manager"], locations=[store])
    pub = await publisher(people)
    await post(pub, envelope("order.delayed", store))
    mine = _only(await inbox(ana), type="order.delayed")
    assert (await _ack(ana, mine["id"])).status_code == 200
    theirs = _only(await inbox(bob), type="order.delayed")
    assert theirs["data"]["claim"]["acknowledged_by"] == str(ana.id)
    assert theirs["data"]["acknowledged_by_name"] == ana.email.split("@")[0]
    assert "Lo atiende" in theirs["message"]
    r = await _ack(bob, theirs["id"])
    assert r.status_code == 409 and r.json()["acknowledged_by"] == str(ana.id)


async def test_unclaimed_critical_alert_escalates_store_then_region(
    people: People, state: AppState
) -> None:
    region = f"r-{uuid.uuid4().hex[:6]}"
    store, neighbour = f"S{uuid.uuid4().hex[:7]}", f"N{uuid.uuid4().hex[:7]}"
    async with state.sessionmaker() as s:
        await users.create_location(s, store, "Tienda", region=region)
        await users.create_location(s, neighbour, "Vecina", region=region)
        await s.commit()
    mgr = await people.create(roles=["manager"], locations=[store])
    staff = await people.create(roles=["staff"], locations=[store])
    area = await people.create(roles=["manager"], locations=[neighbour], locale="en")
    await set_user(state, mgr.id, phone="+34600111222")
    await set_user(state, area.id, phone="+34600333444")
    pub = await publisher(people)
    await post(pub, envelope("lot.expiring", store, sku=f"Y-{uuid.uuid4().hex[:6]}"))
    original = _only(await inbox(mgr), type="lot.expiring")
    opened = dt.datetime.fromisoformat(original["data"]["alert"]["opened_at"])
    # Critical: SMS at once to the manager who has a phone, on top of email.
    first = {d["kind"] for d in await deliveries(state, mgr.id)}
    assert first == {"delivery.email", "delivery.sms"}

    await escalate_once(state, opened + dt.timedelta(minutes=10))
    assert [n for n in await inbox(mgr) if n["type"] == "alert.escalated"] == []

    await escalate_once(state, opened + dt.timedelta(minutes=31))
    esc = _only(await inbox(mgr), type="alert.escalated")
    assert esc["priority"] == "critical" and esc["data"]["escalation"]["level"] == 1
    assert esc["data"]["alert"]["id"] == original["data"]["alert"]["id"]
    assert esc["subject"].startswith("Sin atender: Caducidad")
    sms = [d for d in await deliveries(state, mgr.id) if d["notification_id"] == esc["id"]]
    assert [d["kind"] for d in sms] == ["delivery.sms"] and sms[0]["to"] == "+34600111222"
    assert "ESCALADO" in sms[0]["body"]
    assert await inbox(area) == []  # the region comes at the next step
    assert await inbox(staff) == []  # lot.expiring and its escalation are for managers

    await escalate_once(state, opened + dt.timedelta(minutes=61))
    up = _only(await inbox(area), type="alert.escalated")
    assert up["data"]["escalation"] == {"level": 2, "scope": "region"}
    assert up["subject"].startswith("Unhandled: Expiring")
    kinds = sorted(d["kind"] for d in await deliveries(state, area.id))
    assert kinds == ["delivery.email", "delivery.sms"]
    # Level 2 was the last step: nothing more happens, however long nobody answers.
    await escalate_once(state, opened + dt.timedelta(days=2))
    assert len([n for n in await inbox(mgr) if n["type"] == "alert.escalated"]) == 2
    assert len([n for n in await inbox(area) if n["type"] == "alert.escalated"]) == 1


async def test_escalation_loop_reads_the_injected_clock(people: People, state: AppState) -> None:
    store = await people.location()
    mgr = await people.create(roles=["manager"], locations=[store])
    pub = await publisher(people)
    await post(pub, envelope("lot.expiring", store, sku=f"Y-{uuid.uuid4().hex[:6]}"))
    opened = dt.datetime.fromisoformat(
        _only(await inbox(mgr), type="lot.expiring")["data"]["alert"]["opened_at"]
    )
    # The same loop main.py starts, on a copy of the state with a fast poll and a clock
    # that says 31 minutes have passed.
    fast = state.settings.model_copy(update={"escalation_poll_secs": 0.05})
    loop_state = dataclasses.replace(
        state, settings=fast, extras={"clock": lambda: opened + dt.timedelta(minutes=31)}
    )
    task = asyncio.create_task(run_escalation(loop_state))
    try:

        async def escalated() -> bool:
            return any(n["type"] == "alert.escalated" for n in await inbox(mgr))

        await eventually(escalated, timeout_secs=10, what="the escalation loop")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert _only(await inbox(mgr), type="alert.escalated")["data"]["escalation"]["level"] == 1


async def test_concurrent_readings_of_one_key_make_one_alert(
    people: People, state: AppState
) -> None:
    store = await people.location()
    mgrs = [await people.create(roles=["manager"], locations=[store]) for _ in range(2)]
    pub = await publisher(people)
    sku = f"SKU-{uuid.uuid4().hex[:6]}"
    envs = [envelope("stock.low", store, sku=sku, quantity=q) for q in (9, 8, 7, 6, 5)]
    results = await asyncio.gather(*(pub.post("/v1/events", json=e) for e in envs))
    assert [r.status_code for r in results] == [201] * 5
    assert len({r.json()["alert_id"] for r in results}) == 1
    for m in mgrs:
        (n,) = [n for n in await inbox(m) if n["type"] == "stock.low"]
        assert n["data"]["alert"]["state"] == "open"
    async with state.sessionmaker() as s:
        row = (
            await s.execute(
                text("SELECT count(*) AS n, max(event_count) AS c FROM alerts WHERE sku = :s"),
                {"s": sku},
            )
        ).one()
    assert (row.n, row.c) == (1, 5)
