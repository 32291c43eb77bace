"""The notifications API: scoping, filters, cursor pagination, read state, idempotency,
unread counts, and the realtime announcements on the bus."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from avisos_api.api.deps import AppState
from avisos_common.topology import EXCHANGE_REALTIME
from avisos_testkit.bus import BusTap
from avisos_testkit.infra import Backing

from .conftest import People, Person


def _body(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "stock.low",
        "category": "inventory",
        "subject": "Stock bajo",
        "message": "Quedan 3 unidades",
        "priority": "normal",
    }
    base.update(kw)
    return base


async def _send(admin: Person, **kw: Any) -> dict[str, Any]:
    r = await admin.client.post("/v1/notifications", json=_body(**kw))
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def test_create_list_get_and_cross_user_404(people: People) -> None:
    admin = await people.create(roles=["admin"])
    ana = await people.create()
    bob = await people.create()
    created = await _send(
        admin,
        user_ids=[str(ana.id)],
        data={"sku": "LECHE-1L", "qty": 3},
        action_url="/stock/LECHE-1L",
    )
    nid = created["notification_ids"][0]
    page = (await ana.client.get("/v1/notifications")).json()
    assert [n["id"] for n in page["items"]] == [nid]
    item = page["items"][0]
    assert item["data"] == {"sku": "LECHE-1L", "qty": 3} and item["read_at"] is None
    assert item["seq"] == 1 and item["action_url"] == "/stock/LECHE-1L"
    assert (await ana.client.get(f"/v1/notifications/{nid}")).status_code == 200
    # Bob sees nothing of Ana's, on every route.
    assert (await bob.client.get("/v1/notifications")).json()["items"] == []
    for method, path in [
        ("GET", f"/v1/notifications/{nid}"),
        ("POST", f"/v1/notifications/{nid}/read"),
        ("POST", f"/v1/notifications/{nid}/unread"),
        ("POST", f"/v1/notifications/{nid}/archive"),
    ]:
        r = await bob.client.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json()["detail"] == "notification not found"
    assert (await ana.client.get(f"/v1/notifications/{nid}")).json()["read_at"] is None
    assert (await bob.client.get(f"/v1/notifications/{uuid.uuid4()}")).status_code == 404


async def test_targets_by_role_and_location(people: People) -> None:
    admin = await people.create(roles=["admin"])
    store = await people.location()
    other = await people.location()
    mgr = await people.create(roles=["manager"], locations=[store])
    staff = await people.create(roles=["staff"], locations=[store])
    elsewhere = await people.create(roles=["manager"], locations=[other])
    res = await _send(admin, roles=["manager"], location_codes=[store])
    assert res["recipient_ids"] == [str(mgr.id)]
    res = await _send(admin, location_codes=[store])
    assert sorted(res["recipient_ids"]) == sorted([str(mgr.id), str(staff.id)])
    assert str(elsewhere.id) not in res["recipient_ids"]
    r = await admin.client.post("/v1/notifications", json=_body(location_codes=["NOPE"]))
    assert r.status_code == 422 and "NOPE" in r.json()["detail"]
    r = await admin.client.post("/v1/notifications", json=_body())
    assert r.status_code == 422


async def test_staff_cannot_create(people: People) -> None:
    staff = await people.create()
    r = await staff.client.post("/v1/notifications", json=_body(user_ids=[str(staff.id)]))
    assert r.status_code == 403


async def test_mass_assignment_on_create_is_rejected(people: People) -> None:
    admin = await people.create(roles=["admin"])
    r = await admin.client.post(
        "/v1/notifications", json=_body(user_ids=[str(admin.id)], read_at="2020-01-01T00:00:00Z")
    )
    assert r.status_code == 422
    r = await admin.client.post("/v1/notifications", json=_body(user_ids=[str(admin.id)], seq=99))
    assert r.status_code == 422


async def test_filters(people: People) -> None:
    admin = await people.create(roles=["admin"])
    u = await people.create()
    to = [str(u.id)]
    await _send(
        admin, user_ids=to, category="orders", priority="high", subject="Pedido 42 retrasado"
    )
    await _send(
        admin, user_ids=to, category="inventory", priority="critical", subject="Agotado 100%"
    )
    third = await _send(
        admin, user_ids=to, category="inventory", priority="low", type="price.changed"
    )
    await u.client.post(f"/v1/notifications/{third['notification_ids'][0]}/read")

    async def subjects(**params: Any) -> list[str]:
        r = await u.client.get("/v1/notifications", params=params)
        assert r.status_code == 200, r.text
        return [n["subject"] for n in r.json()["items"]]

    assert await subjects(category="orders") == ["Pedido 42 retrasado"]
    assert await subjects(priority=["critical", "high"]) == ["Agotado 100%", "Pedido 42 retrasado"]
    assert len(await subjects(read="false")) == 2
    assert await subjects(read="true", type="price.changed") == ["Stock bajo"]
    assert await subjects(q="100%") == ["Agotado 100%"]  # LIKE wildcards are literal
    assert await subjects(q="pedido") == ["Pedido 42 retrasado"]
    assert len(await subjects(since="2000-01-01T00:00:00Z")) == 3
    assert await subjects(until="2000-01-01T00:00:00Z") == []
    bad = await u.client.get("/v1/notifications", params={"priority": "urgent"})
    assert bad.status_code == 422
    assert (await u.client.get("/v1/notifications", params={"cursor": "abc"})).status_code == 422


async def test_cursor_pagination_has_no_gaps_or_duplicates_while_rows_arrive(
    people: People,
) -> None:
    admin = await people.create(roles=["admin"])
    u = await people.create()
    for i in range(25):
        await _send(admin, user_ids=[str(u.id)], subject=f"n{i}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = (await u.client.get("/v1/notifications", params=params)).json()
        seen.extend(n["subject"] for n in page["items"])
        pages += 1
        # New notifications arrive between pages: they are newer, so never in later pages.
        await _send(admin, user_ids=[str(u.id)], subject=f"new{pages}")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"n{i}" for i in reversed(range(25))]
    assert pages == 3


async def test_read_unread_read_all_and_unread_count(people: People, state: AppState) -> None:
    admin = await people.create(roles=["admin"])
    u = await people.create()
    to = [str(u.id)]
    ids = []
    for prio in ("low", "normal", "high", "critical", "critical"):
        ids.append(
            (await _send(admin, user_ids=to, priority=prio, category="inventory"))[
                "notification_ids"
            ][0]
        )
    await _send(admin, user_ids=to, priority="normal", category="orders")

    async def count() -> dict[str, Any]:
        r = await u.client.get("/v1/notifications/unread-count")
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body

    assert await count() == {
        "total": 6,
        "by_priority": {"low": 1, "normal": 2, "high": 1, "critical": 2},
    }
    r = await u.client.post(f"/v1/notifications/{ids[3]}/read")
    assert r.status_code == 200 and r.json()["read_at"] is not None
    assert (await count())["by_priority"]["critical"] == 1
    again = await u.client.post(f"/v1/notifications/{ids[3]}/read")  # idempotent
    assert again.status_code == 200 and (await count())["total"] == 5
    await u.client.post(f"/v1/notifications/{ids[3]}/unread")
    assert (await count())["total"] == 6
    r = await u.client.post("/v1/notifications/read-all", json={"category": "orders"})
    assert r.json()["updated"] == 1 and r.json()["unread"]["total"] == 5
    r = await u.client.post("/v1/notifications/read-all", json={"category": "x", "oops": 1})
    assert r.status_code == 422
    r = await u.client.post("/v1/notifications/read-all")
    assert r.json() == {
        "updated": 5,
        "unread": {"total": 0, "by_priority": {"low": 0, "normal": 0, "high": 0, "critical": 0}},
    }
    assert (await count())["total"] == 0
    # The counter is served from Redis and is right straight after changes.
    cached = await state.cache.client.hgetall(state.cache.unread_key(str(u.id)))
    assert cached == {"low": "0", "normal": "0", "high": "0", "critical": "0"}
    await _send(admin, user_ids=to, priority="high")
    assert (await count())["by_priority"]["high"] == 1


async def test_archive_hides_and_uncounts(people: People) -> None:
    admin = await people.create(roles=["admin"])
    u = await people.create()
    nid = (await _send(admin, user_ids=[str(u.id)]))["notification_ids"][0]
    r = await u.client.post(f"/v1/notifications/{nid}/archive")
    assert r.status_code == 200 and r.json()["archived_at"] is not None
    assert (await u.client.get("/v1/notifications")).json()["items"] == []
    archived = (await u.client.get("/v1/notifications", params={"archived": "true"})).json()
    assert [n["id"] for n in archived["items"]] == [nid]
    assert (await u.client.get("/v1/notifications/unread-count")).json()["total"] == 0


async def test_idempotency_key(people: People) -> None:
    admin = await people.create(roles=["admin"])
    u = await people.create()
    body = _body(user_ids=[str(u.id)])
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await admin.client.post("/v1/notifications", json=body, headers=key)
    second = await admin.client.post("/v1/notifications", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    conflict = await admin.client.post(
        "/v1/notifications", json={**body, "subject": "other"}, headers=key
    )
    assert conflict.status_code == 409
    assert conflict.json()["type"].endswith("idempotency-conflict")
    # Concurrent duplicates still create exactly one.
    key2 = {"Idempotency-Key": f"burst-{uuid.uuid4()}"}
    results = await asyncio.gather(
        *(admin.client.post("/v1/notifications", json=body, headers=key2) for _ in range(5))
    )
    assert {r.status_code for r in results} == {201}
    assert len({tuple(r.json()["notification_ids"]) for r in results}) == 1
    assert len((await u.client.get("/v1/notifications")).json()["items"]) == 2


async def test_changes_are_announced_on_the_bus(people: People, backing: Backing) -> None:
    admin = await people.create(roles=["admin"])
    u = await people.create()
    async with BusTap(backing.amqp_url, EXCHANGE_REALTIME, "") as tap:
        nid = (await _send(admin, user_ids=[str(u.id)], priority="high"))["notification_ids"][0]
        await u.client.post(f"/v1/notifications/{nid}/read")
        msgs = [m for m in await tap.wait_for(2) if m.get("user_id") == str(u.id)]
    created, read = msgs[0], msgs[1]
    assert created["kind"] == "notification.created"
    assert created["notification"]["id"] == nid and created["notification"]["seq"] == 1
    assert created["unread"]["by_priority"]["high"] == 1 and created["schema_version"] == 1
    assert read["kind"] == "notification.read_state" and read["notification_ids"] == [nid]
    assert read["unread"]["total"] == 0
    raw = next(m for m in tap.messages if b'"notification.created"' in m.body)
    assert raw.message_id == created["message_id"] and raw.delivery_mode == 2


async def test_one_notification_to_many_is_announced_in_chunks(
    people: People, backing: Backing, monkeypatch: Any
) -> None:
    """Several recipients: the content once per bus message, the recipients split into
    chunks (shrunk here from 500 to 2), each with its own id, seq and unread count."""
    from avisos_api.services import notifications as svc

    monkeypatch.setattr(svc, "FANOUT_CHUNK_RECIPIENTS", 2)
    admin = await people.create(roles=["admin"])
    users = [await people.create() for _ in range(5)]
    await _send(admin, user_ids=[str(users[0].id)])  # users[0] now has seq 1, 1 unread
    async with BusTap(backing.amqp_url, EXCHANGE_REALTIME, "") as tap:
        created = await _send(admin, user_ids=[str(u.id) for u in users], subject="Recuento")
        msgs = [m for m in await tap.wait_for(3) if m["kind"] == "notifications.created"]
    assert [len(m["recipients"]) for m in msgs] == [2, 2, 1]
    assert all(m["notification"]["subject"] == "Recuento" for m in msgs)
    assert all("id" not in m["notification"] for m in msgs)
    recipients = {r["user_id"]: r for m in msgs for r in m["recipients"]}
    assert set(recipients) == {str(u.id) for u in users}
    assert {r["notification_id"] for r in recipients.values()} == set(created["notification_ids"])
    first = recipients[str(users[0].id)]
    assert first["seq"] == 2 and first["unread"]["total"] == 2
    assert all(recipients[str(u.id)]["seq"] == 1 for u in users[1:])
    for u in users:
        r = recipients[str(u.id)]
        listed = (await u.client.get("/v1/notifications")).json()["items"][0]
        assert listed["id"] == r["notification_id"] and listed["seq"] == r["seq"]
