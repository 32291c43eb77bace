"""Inventory events over HTTP: every built-in type reaches the right people in their
language (and nobody else), deliveries are decided, retries have one effect, and bad
events get a clear 422 problem."""

from __future__ import annotations

import asyncio
import uuid

from avisos_api.api.deps import AppState
from avisos_api.events.context import delivery_id
from avisos_api.events.schemas import EVENT_TYPES

from .conftest import People
from .events_helpers import deliveries, envelope, inbox, post, publisher

#: type -> (roles it reaches by default, Spanish word, English word in the subject)
EXPECTED: dict[str, tuple[set[str], str, str]] = {
    "stock.low": ({"manager"}, "Stock bajo", "Low stock"),
    "stock.out": ({"manager", "staff"}, "Agotado", "Out of stock"),
    "stock.restored": (set(), "", ""),
    "order.received": ({"staff"}, "recibido", "received"),
    "order.delayed": ({"manager", "staff"}, "retrasado", "delayed"),
    "transfer.requested": ({"manager"}, "solicitado", "requested"),
    "transfer.completed": ({"manager"}, "recibido", "received"),
    "price.changed": ({"manager", "staff"}, "Cambio de precio", "Price change"),
    "lot.expiring": ({"manager"}, "Caducidad", "Expiring"),
}


async def test_every_type_reaches_the_right_people_in_their_language(
    people: People, state: AppState
) -> None:
    assert set(EXPECTED) == set(EVENT_TYPES)
    store, other = await people.location(), await people.location()
    mgr_es = await people.create(roles=["manager"], locations=[store], locale="es")
    mgr_en = await people.create(roles=["manager"], locations=[store], locale="en")
    staff_en = await people.create(roles=["staff"], locations=[store], locale="en")
    elsewhere = await people.create(roles=["manager", "staff"], locations=[other])
    pub = await publisher(people)
    by_role = {"manager": [mgr_es, mgr_en], "staff": [staff_en]}

    for type_, (roles, es_word, en_word) in EXPECTED.items():
        env = envelope(type_, store)
        result = await post(pub, env)
        wanted = {p.id for r in roles for p in by_role[r]}
        assert result["notifications"] == len(wanted), type_
        for person in (mgr_es, mgr_en, staff_en):
            mine = [n for n in await inbox(person) if n["source_event_id"] == env["id"]]
            if person.id not in wanted:
                assert mine == [], (type_, person.email)
                continue
            assert len(mine) == 1, (type_, person.email)
            n = mine[0]
            assert n["type"] == type_
            assert n["data"]["event"] == {
                "source": "erp-test",
                "id": env["id"],
                "type": type_,
                "time": n["data"]["event"]["time"],
                "subject": None,
            }
            word = en_word if person is not mgr_es else es_word
            assert word in n["subject"], (type_, n["subject"])
        assert [n for n in await inbox(elsewhere) if n["source_event_id"] == env["id"]] == []

    # stock.out went by email to the managers (role default on), not to staff (off).
    out = next(n for n in await inbox(mgr_es) if n["type"] == "stock.out")
    mails = [d for d in await deliveries(state, mgr_es.id) if d["notification_id"] == out["id"]]
    assert [m["kind"] for m in mails] == ["delivery.email"]
    assert mails[0]["delivery_id"] == str(delivery_id(uuid.UUID(out["id"]), "email"))
    assert mails[0]["subject"].startswith("Agotado") and mails[0]["priority"] == "high"
    assert "<p>" in mails[0]["html"] and mails[0]["to"] == mgr_es.email
    en_out = next(n for n in await inbox(mgr_en) if n["type"] == "stock.out")
    en_mail = [
        d for d in await deliveries(state, mgr_en.id) if d["notification_id"] == en_out["id"]
    ]
    assert en_mail[0]["subject"].startswith("Out of stock")
    assert await deliveries(state, staff_en.id) == []
    assert await deliveries(state, elsewhere.id) == []


async def test_same_event_five_times_is_one_effect(people: People, state: AppState) -> None:
    store = await people.location()
    mgr = await people.create(roles=["manager"], locations=[store])
    staff = await people.create(roles=["staff"], locations=[store])
    pub = await publisher(people)
    env = envelope("stock.out", store, sku=f"SKU-{uuid.uuid4().hex[:6]}")
    first = await post(pub, env)
    assert first["duplicate"] is False and first["notifications"] == 2
    for _ in range(4):
        again = await post(pub, env, expect=200)
        assert again["duplicate"] is True and again["notifications"] == 2
        assert again["alert_id"] == first["alert_id"]
    # Concurrent retries of another event: exactly one applies.
    env2 = envelope("order.delayed", store)
    results = await asyncio.gather(*(pub.post("/v1/events", json=env2) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 201]
    for person in (mgr, staff):
        items = await inbox(person)
        assert len([n for n in items if n["source_event_id"] == env["id"]]) == 1
        assert len([n for n in items if n["source_event_id"] == env2["id"]]) == 1
    mails = [d for d in await deliveries(state, mgr.id) if d["kind"] == "delivery.email"]
    assert len(mails) == 2 and len({m["delivery_id"] for m in mails}) == 2
    # The same id from another source is another event.
    other = dict(env, source="erp-other")
    assert (await post(pub, other))["duplicate"] is False


async def test_bad_events_get_a_clear_422(people: People) -> None:
    store = await people.location()
    pub = await publisher(people)
    cases = [
        (dict(envelope("stock.low", store), type="stock.exploded"), "unknown event type"),
        (envelope("stock.low", store, quantity="many"), "data.quantity"),
        (envelope("stock.low", store, colour="red"), "data.colour"),
        ({"id": "x", "source": "erp", "type": "stock.low"}, "time"),
        (dict(envelope("stock.low", store), schema_version=2), "schema_version"),
    ]
    for body, needle in cases:
        r = await pub.post("/v1/events", json=body)
        assert r.status_code == 422, body
        assert r.headers["content-type"].startswith("application/problem+json")
        assert needle in r.json()["detail"], r.json()
    r = await pub.post(
        "/v1/events", content=b"[1, 2]", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


async def test_publishing_needs_the_scope(people: People) -> None:
    store = await people.location()
    staff = await people.create(roles=["staff"], locations=[store])
    r = await staff.client.post("/v1/events", json=envelope("stock.low", store))
    assert r.status_code == 403
    admin = await people.create(roles=["admin"])
    key = (
        await admin.client.post(
            "/v1/admin/api-keys", json={"name": "n", "scopes": ["notifications:write"]}
        )
    ).json()["key"]
    r = await admin.client.post(
        "/v1/events",
        json=envelope("stock.low", store),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403
    assert "events:publish" in r.json()["detail"]


async def test_admins_list_applied_events(people: People) -> None:
    store = await people.location()
    pub = await publisher(people)
    source = f"erp-{uuid.uuid4().hex[:6]}"
    env = envelope("order.delayed", store, source=source)
    await post(pub, env)
    admin = await people.create(roles=["admin"])
    rows = (await admin.client.get("/v1/events", params={"source": source})).json()
    assert [(r["id"], r["type"], r["received_via"]) for r in rows] == [
        (env["id"], "order.delayed", "http")
    ]
    staff = await people.create()
    assert (await staff.client.get("/v1/events")).status_code == 403
