"""Admin templates (edit, preview, broken template falls back to the built-in one) and
admin rules (CRUD, validation, conditions deciding who is told)."""

from __future__ import annotations

import uuid

from avisos_api.api.deps import AppState

from .conftest import People
from .events_helpers import deliveries, envelope, inbox, post, publisher

TPL = "/v1/admin/templates"


async def test_broken_template_still_delivers_with_the_default(
    people: People, state: AppState
) -> None:
    admin = await people.create(roles=["admin"])
    store = await people.location()
    mgr = await people.create(roles=["manager"], locations=[store], locale="en")
    broken = {"parts": {"subject": "Out: {{ data.nope.deeper }}", "message": "{{ 1 / 0 }}"}}
    r = await admin.client.put(f"{TPL}/stock.out/in_app/en", json=broken)
    assert r.status_code == 200 and r.json()["origin"] == "override"
    custom = {
        "parts": {
            "subject": "[{{ location.code }}] {{ data.sku }} gone",
            "html": "<p>{{ data.product_name }}</p>",
            "text": "{{ data.product_name }} is gone",
        }
    }
    assert (await admin.client.put(f"{TPL}/stock.out/email/en", json=custom)).status_code == 200
    try:
        pub = await publisher(people)
        await post(pub, envelope("stock.out", store, product_name="Milk <1L>"))
        (n,) = await inbox(mgr)
        assert n["subject"] == f"Out of stock: Milk <1L> at Store {store}"  # the built-in
        got = (await admin.client.get(f"{TPL}/stock.out/in_app/en")).json()
        assert got["last_error"].split(":")[0] in ("UndefinedError", "ZeroDivisionError")
        assert got["last_error_at"]
        listed = (await admin.client.get(TPL)).json()
        assert any(t["last_error"] for t in listed if t["event_type"] == "stock.out")
        (mail,) = await deliveries(state, mgr.id)
        assert mail["subject"] == f"[{store}] LECHE-1L gone"
        assert mail["html"] == "<p>Milk &lt;1L&gt;</p>" and mail["text"] == "Milk <1L> is gone"
    finally:
        for ch in ("in_app", "email"):
            assert (await admin.client.delete(f"{TPL}/stock.out/{ch}/en")).status_code == 204
    assert (await admin.client.get(f"{TPL}/stock.out/in_app/en")).json()["origin"] == "builtin"


async def test_template_validation_and_preview(people: People) -> None:
    admin = await people.create(roles=["admin"])
    staff = await people.create()
    assert (await staff.client.get(TPL)).status_code == 403
    r = await admin.client.put(f"{TPL}/stock.low/sms/es", json={"parts": {"text": "{% if %}"}})
    assert r.status_code == 422 and "syntax" in r.json()["detail"]
    r = await admin.client.put(f"{TPL}/stock.low/sms/es", json={"parts": {"title": "x"}})
    assert r.status_code == 422
    assert (await admin.client.get(f"{TPL}/stock.nope/sms/es")).status_code == 404

    r = await admin.client.post(
        f"{TPL}/preview", json={"event_type": "lot.expiring", "channel": "sms", "locale": "es"}
    )
    body = r.json()
    assert body["ok"] is True and body["rendered"]["text"].startswith("Avisos URGENTE")
    assert body["sms"]["encoding"] == "GSM-7" and body["sms"]["segments"] == 1
    r = await admin.client.post(
        f"{TPL}/preview",
        json={
            "event_type": "stock.low",
            "channel": "sms",
            "parts": {"text": "Stock bajo: {{ data.product_name }} " + "á" * 80},
            "data": {"product_name": "Leche"},
        },
    )
    assert r.json()["sms"] == {"length": 98, "encoding": "UCS-2", "segments": 2}
    r = await admin.client.post(
        f"{TPL}/preview",
        json={
            "event_type": "stock.low",
            "channel": "email",
            "parts": {
                "subject": "s",
                "html": "<b>{{ data.product_name }}</b>",
                "text": "{{ x.y }}",
            },
            "data": {"product_name": "<script>"},
        },
    )
    assert r.json()["ok"] is False and "UndefinedError" in r.json()["error"]
    r = await admin.client.post(
        f"{TPL}/preview",
        json={
            "event_type": "stock.low",
            "channel": "email",
            "parts": {"subject": "s", "html": "<b>{{ data.product_name }}</b>", "text": "t"},
            "data": {"product_name": "<script>"},
        },
    )
    assert r.json()["rendered"]["html"] == "<b>&lt;script&gt;</b>"


async def test_rules_crud_and_conditions(people: People) -> None:
    admin = await people.create(roles=["admin"])
    store = await people.location()
    buyer = await people.create(roles=["staff"])  # no location: reached only by name
    rule = {
        "name": "frozen running out",
        "event_types": ["stock.low"],
        "conditions": [
            {"field": "quantity", "op": "lt", "value": 3},
            {"field": "category", "op": "in", "value": ["frozen", "ice"]},
            {"field": "location_code", "op": "eq", "value": store},
        ],
        "location_scope": "any",
        "user_ids": [str(buyer.id)],
        "priority": "high",
        "category": "inventory",
        "channels": ["push"],
    }
    for bad in (
        dict(rule, event_types=["stock.gone"]),
        dict(rule, conditions=[{"field": "quantity", "op": "like", "value": 1}]),
        dict(rule, location_scope="fixed"),
        dict(rule, priority="urgent"),
        dict(rule, id=str(uuid.uuid4())),
    ):
        r = await admin.client.post("/v1/admin/rules", json=bad)
        assert r.status_code == 422, bad
    r = await admin.client.post("/v1/admin/rules", json=rule)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["channels"] == ["in_app", "push"] and created["builtin_key"] is None
    rid = created["id"]
    try:
        listed = (await admin.client.get("/v1/admin/rules")).json()
        assert rid in {x["id"] for x in listed}
        assert {"lot.expiring.store-managers", "stock.out.store-team"} <= {
            x["builtin_key"] for x in listed
        }
        pub = await publisher(people)
        cases = [(5, "frozen", False), (2, "dairy", False), (2, "frozen", True), (1, "ice", True)]
        for qty, cat, reached in cases:
            sku = f"SKU-{uuid.uuid4().hex[:6]}"
            await post(pub, envelope("stock.low", store, sku=sku, quantity=qty, category=cat))
            got = [n for n in await inbox(buyer) if n["data"]["sku"] == sku]
            assert len(got) == int(reached), (qty, cat)
            if reached:
                assert got[0]["priority"] == "high"
        updated = dict(rule, enabled=False, name="off")
        r = await admin.client.put(f"/v1/admin/rules/{rid}", json=updated)
        assert r.status_code == 200 and r.json()["enabled"] is False
        await post(pub, envelope("stock.low", store, sku="ZZ", quantity=0, category="ice"))
        assert not [n for n in await inbox(buyer) if n["data"]["sku"] == "ZZ"]
    finally:
        assert (await admin.client.delete(f"/v1/admin/rules/{rid}")).status_code == 204
    assert (await admin.client.get(f"/v1/admin/rules/{rid}")).status_code == 404
    staff = await people.create()
    assert (await staff.client.get("/v1/admin/rules")).status_code == 403
