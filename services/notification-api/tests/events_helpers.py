"""Helpers shared by the test_events_* suites: envelopes, publishing over HTTP and AMQP,
reading what the API decided (notifications, outbox deliveries, scheduled rows)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import aio_pika
import httpx
from sqlalchemy import text

from avisos_api.api.deps import AppState
from avisos_api.events.schemas import EXAMPLES
from avisos_common.topology import EXCHANGE_EVENTS, declare_topology

from .conftest import People, Person


def envelope(
    type_: str,
    location: str,
    *,
    id: str | None = None,
    source: str = "erp-test",
    **data: Any,
) -> dict[str, Any]:
    """An event of ``type_`` at ``location``, data from the type's example + ``data``."""
    body = dict(EXAMPLES[type_])
    body["location_code"] = location
    body.update(data)
    return {
        "id": id or f"ev-{uuid.uuid4().hex[:12]}",
        "source": source,
        "type": type_,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "data": body,
    }


async def publisher(people: People) -> httpx.AsyncClient:
    """A client authenticated with an API key that has ``events:publish``."""
    admin = await people.create(roles=["admin"])
    r = await admin.client.post(
        "/v1/admin/api-keys", json={"name": "erp", "scopes": ["events:publish"]}
    )
    assert r.status_code == 201, r.text
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=people.app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {r.json()['key']}"},
    )
    people._clients.append(client)
    return client


async def post(client: httpx.AsyncClient, env: dict[str, Any], expect: int = 201) -> dict[str, Any]:
    r = await client.post("/v1/events", json=env)
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


async def inbox(person: Person) -> list[dict[str, Any]]:
    r = await person.client.get("/v1/notifications", params={"limit": 200})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def set_user(state: AppState, user_id: uuid.UUID, **values: Any) -> None:
    cols = ", ".join(f"{k} = :{k}" for k in values)
    async with state.sessionmaker() as s:
        await s.execute(text(f"UPDATE users SET {cols} WHERE id = :id"), {**values, "id": user_id})
        await s.commit()


async def deliveries(state: AppState, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """Dispatch messages (email/sms/push) written to the outbox for ``user_id``."""
    async with state.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT body FROM outbox WHERE exchange = 'avisos.dispatch' ORDER BY id")
            )
        ).all()
    out = [json.loads(bytes(r.body)) for r in rows]
    return [m for m in out if m["user_id"] == str(user_id)]


async def realtime(state: AppState, user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with state.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT body FROM outbox WHERE exchange = 'avisos.realtime' ORDER BY id")
            )
        ).all()
    out = [json.loads(bytes(r.body)) for r in rows]
    return [m for m in out if m.get("user_id") == str(user_id)]


async def scheduled(state: AppState, user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with state.sessionmaker() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT id, kind, channel, due_at, released_at, outcome, digest_window, "
                    "payload FROM scheduled_deliveries WHERE user_id = :u ORDER BY id"
                ),
                {"u": user_id},
            )
        ).all()
    return [dict(r._mapping) for r in rows]


async def amqp_publish(
    amqp_url: str, body: dict[str, Any] | bytes, routing_key: str, message_id: str | None = None
) -> None:
    """A real publish to ``inventory.events`` on the test vhost, with confirms."""
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await declare_topology(ch)
        ex = await ch.get_exchange(EXCHANGE_EVENTS)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        await ex.publish(
            aio_pika.Message(
                raw,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
            ),
            routing_key=routing_key,
        )
