"""Preferences, mandatory categories, quiet hours, digests, "only if still unread",
contact points. Time-dependent release is driven with an explicit clock."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

from avisos_api.api.deps import AppState
from avisos_api.events.background import release_once

from .conftest import People, Person
from .events_helpers import deliveries, envelope, inbox, post, publisher, scheduled, set_user

SUB = {"endpoint": "", "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2w", "auth": "tBHItJI5svbpez7K"}}


async def _subscribe(person: Person) -> dict[str, Any]:
    body = dict(SUB, endpoint=f"https://push.test/{uuid.uuid4().hex}")
    r = await person.client.post("/v1/me/push-subscriptions", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _cat(prefs: dict[str, Any], category: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in prefs["categories"] if c["category"] == category)
    return found


async def test_preferences_defaults_mandatory_and_opt_out(people: People, state: AppState) -> None:
    store = await people.location()
    staff = await people.create(roles=["staff"], locations=[store])
    prefs = (await staff.client.get("/v1/me/preferences")).json()
    inv = _cat(prefs, "inventory")["channels"]
    assert inv["in_app"] == {"enabled": True, "locked": True, "default": True}
    assert inv["email"]["enabled"] is False and inv["push"]["enabled"] is True
    expiry = _cat(prefs, "expiry")
    assert expiry["mandatory"] is True and all(c["locked"] for c in expiry["channels"].values())
    assert prefs["digest"] == "off" and prefs["quiet_hours"] is None

    for body in (
        {"channels": {"expiry": {"email": False}}},
        {"channels": {"inventory": {"in_app": False}}},
        {"channels": {"nonsense": {"email": True}}},
        {"digest": "weekly"},
        {"quiet_hours": {"start": "22:00", "end": "22:00"}},
    ):
        r = await staff.client.put("/v1/me/preferences", json=body)
        assert r.status_code == 422, body
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await staff.client.put(
        "/v1/me/preferences", json={"channels": {"inventory": {"email": True, "push": False}}}
    )
    assert r.status_code == 200, r.text
    inv = _cat(r.json(), "inventory")["channels"]
    assert inv["email"]["enabled"] is True and inv["push"]["enabled"] is False

    # stock.out (email + push) now mails this staff member, and push is opted out.
    await _subscribe(staff)
    pub = await publisher(people)
    await post(pub, envelope("stock.out", store))
    assert [d["kind"] for d in await deliveries(state, staff.id)] == ["delivery.email"]

    # A mandatory category reaches staff by email although their role default is off.
    admin = await people.create(roles=["admin"])
    rule = {
        "name": "expiring lots: staff too",
        "event_types": ["lot.expiring"],
        "conditions": [{"field": "location_code", "op": "eq", "value": store}],
        "roles": ["staff"],
        "priority": "high",
        "category": "expiry",
        "channels": ["email"],
    }
    created = await admin.client.post("/v1/admin/rules", json=rule)
    assert created.status_code == 201, created.text
    try:
        await post(pub, envelope("lot.expiring", store))
    finally:
        await admin.client.delete(f"/v1/admin/rules/{created.json()['id']}")
    mails = [d for d in await deliveries(state, staff.id) if d["subject"].startswith("URGENTE")]
    assert len(mails) == 1

    r = await staff.client.put(
        "/v1/me/preferences", json={"quiet_hours": {"start": "22:00", "end": "07:00"}}
    )
    assert r.json()["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert _cat(r.json(), "inventory")["channels"]["email"]["enabled"] is True  # kept
    r = await staff.client.put("/v1/me/preferences", json={"quiet_hours": None})
    assert r.json()["quiet_hours"] is None


async def test_quiet_hours_defer_non_critical_then_release(people: People, state: AppState) -> None:
    store = await people.location()
    mgr = await people.create(roles=["manager"], locations=[store])
    await set_user(state, mgr.id, timezone="America/New_York", phone="+34600555666")
    await _subscribe(mgr)
    local = dt.datetime.now(zoneinfo.ZoneInfo("America/New_York"))
    start = (local - dt.timedelta(hours=1)).strftime("%H:%M")
    end = (local + dt.timedelta(hours=1)).strftime("%H:%M")
    r = await mgr.client.put(
        "/v1/me/preferences", json={"quiet_hours": {"start": start, "end": end}}
    )
    assert r.status_code == 200, r.text
    pub = await publisher(people)
    admin = await people.create(roles=["admin"])
    sms_rule = {
        "name": "stock.out by SMS here",
        "event_types": ["stock.out"],
        "conditions": [{"field": "location_code", "op": "eq", "value": store}],
        "roles": ["manager"],
        "priority": "high",
        "category": "inventory",
        "channels": ["sms"],
    }
    r = await admin.client.post("/v1/admin/rules", json=sms_rule)
    assert r.status_code == 201, r.text
    try:
        await post(pub, envelope("stock.out", store))  # high: email + SMS + push wait
    finally:
        await admin.client.delete(f"/v1/admin/rules/{r.json()['id']}")
    assert [n["type"] for n in await inbox(mgr)] == ["stock.out"]  # in-app arrives at once
    assert await deliveries(state, mgr.id) == []
    waiting = await scheduled(state, mgr.id)
    assert sorted(w["channel"] for w in waiting) == ["email", "push", "sms"]
    assert {w["kind"] for w in waiting} == {"deferred"}
    due = waiting[0]["due_at"]
    assert abs((due - (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))).total_seconds()) < 120

    await post(pub, envelope("lot.expiring", store))  # critical goes through
    now_kinds = sorted(d["kind"] for d in await deliveries(state, mgr.id))
    assert now_kinds == ["delivery.email", "delivery.push", "delivery.sms"]

    assert await release_once(state, due - dt.timedelta(minutes=1)) >= 0
    assert len(await deliveries(state, mgr.id)) == 3  # not yet
    # Opting out of push while it waits is honoured at release.
    r = await mgr.client.put(
        "/v1/me/preferences", json={"channels": {"inventory": {"push": False}}}
    )
    assert r.status_code == 200
    await release_once(state, due + dt.timedelta(seconds=1))
    after = await deliveries(state, mgr.id)
    assert sorted(d["kind"] for d in after) == [
        "delivery.email",
        "delivery.email",
        "delivery.push",
        "delivery.sms",
        "delivery.sms",
    ]
    outcomes = {w["channel"]: w["outcome"] for w in await scheduled(state, mgr.id)}
    assert outcomes == {"email": "sent", "sms": "sent", "push": "opted_out"}
    await release_once(state, due + dt.timedelta(hours=5))
    assert len(await deliveries(state, mgr.id)) == 5  # released once only


async def test_low_priority_email_digest(people: People, state: AppState) -> None:
    store = await people.location()
    staff = await people.create(roles=["staff"], locations=[store], locale="en")
    r = await staff.client.put(
        "/v1/me/preferences", json={"channels": {"orders": {"email": True}}, "digest": "hourly"}
    )
    assert r.status_code == 200 and r.json()["digest"] == "hourly"
    pub = await publisher(people)
    for i in range(3):
        await post(pub, envelope("order.received", store, order_id=f"PO-{i}"))
    await post(pub, envelope("order.delayed", store))  # high priority: not digested
    assert len(await inbox(staff)) == 4
    mails = await deliveries(state, staff.id)
    assert [m["subject"] for m in mails] == ["Order PO-2291 delayed"]
    rows = await scheduled(state, staff.id)
    assert [r["kind"] for r in rows] == ["digest"] * 3
    assert len({r["digest_window"] for r in rows}) == 1
    await release_once(state, rows[0]["due_at"] + dt.timedelta(seconds=1))
    mails = await deliveries(state, staff.id)
    assert len(mails) == 2
    digest = mails[1]
    assert digest["subject"] == "Avisos: 3 notifications in the last hour"
    assert digest["notification_id"] is None and digest["priority"] == "low"
    assert all(f"Order PO-{i} received" in digest["text"] for i in range(3))


async def test_email_only_if_still_unread(people: People, state: AppState) -> None:
    store = await people.location()
    reader = await people.create(roles=["manager"], locations=[store])
    busy = await people.create(roles=["manager"], locations=[store])
    admin = await people.create(roles=["admin"])
    rule = {
        "name": "transfer completed: email if unread",
        "event_types": ["transfer.completed"],
        "conditions": [{"field": "location_code", "op": "eq", "value": store}],
        "roles": ["manager"],
        "priority": "normal",
        "category": "transfers",
        "channels": ["in_app", "email"],
        "email_delay_minutes": 10,
    }
    r = await admin.client.post("/v1/admin/rules", json=rule)
    assert r.status_code == 201, r.text
    try:
        pub = await publisher(people)
        await post(pub, envelope("transfer.completed", store))
        assert await deliveries(state, reader.id) == [] == await deliveries(state, busy.id)
        n = (await inbox(reader))[0]
        assert (await reader.client.post(f"/v1/notifications/{n['id']}/read")).status_code == 200
        due = (await scheduled(state, busy.id))[0]["due_at"]
        await release_once(state, due + dt.timedelta(seconds=1))
        assert await deliveries(state, reader.id) == []
        assert [(await scheduled(state, reader.id))[0]["outcome"]] == ["read"]
        mails = await deliveries(state, busy.id)
        assert [m["kind"] for m in mails] == ["delivery.email"]
    finally:
        await admin.client.delete(f"/v1/admin/rules/{r.json()['id']}")


async def test_push_subscriptions_and_vapid_key(people: People, state: AppState) -> None:
    ana = await people.create()
    bob = await people.create()
    a1, a2 = await _subscribe(ana), await _subscribe(ana)
    listed = (await ana.client.get("/v1/me/push-subscriptions")).json()
    assert {s["id"] for s in listed} == {a1["id"], a2["id"]}
    assert (await bob.client.get("/v1/me/push-subscriptions")).json() == []
    r = await bob.client.delete(f"/v1/me/push-subscriptions/{a1['id']}")
    assert r.status_code == 404
    r = await ana.client.delete(f"/v1/me/push-subscriptions/{a1['id']}")
    assert r.status_code == 204
    assert [s["id"] for s in (await ana.client.get("/v1/me/push-subscriptions")).json()] == [
        a2["id"]
    ]
    bad = dict(SUB, endpoint="http://insecure.test/x")
    assert (await ana.client.post("/v1/me/push-subscriptions", json=bad)).status_code == 422

    assert (await ana.client.get("/v1/push/vapid-public-key")).status_code == 404
    state.settings.vapid_public_key = "BExampleVapidPublicKey"
    try:
        r = await ana.client.get("/v1/push/vapid-public-key")
        assert r.json() == {"public_key": "BExampleVapidPublicKey"}
    finally:
        state.settings.vapid_public_key = None
