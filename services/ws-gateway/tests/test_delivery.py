"""A notification reaches its recipient's sockets, and only theirs."""

from __future__ import annotations

import asyncio
import uuid

from gwkit import Client, GatewayProcess, World


async def test_notification_reaches_recipient(world: World, gateway: GatewayProcess) -> None:
    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"), what="initial unread_count")
    hello = client.of("connection_established")[0]
    assert hello["v"] == 1
    assert hello["user_id"] == str(user)
    assert hello["cursor"] == 0

    sent = await world.notify(user, priority="high", subject="Stock bajo: SKU-1")
    await client.wait_for(lambda: client.notifications(), what="notification")
    frame = client.notifications()[0]
    assert frame["type"] == "notification"
    assert frame["cursor"] == sent.seq == 1
    n = frame["notification"]
    assert n["id"] == str(sent.id)
    assert n["subject"] == "Stock bajo: SKU-1"
    assert n["priority"] == "high"
    assert "recipient_id" not in n
    assert {"type", "category", "message", "created_at", "data", "read_at", "updated_at"} <= set(n)
    assert frame["unread"]["total"] == 1
    await client.close()


async def test_users_never_see_each_others_notifications(
    world: World, gateway: GatewayProcess
) -> None:
    users = [await world.user() for _ in range(40)]
    clients: dict[uuid.UUID, list[Client]] = {}
    for u in users:
        # Two tabs for every user.
        clients[u] = [await Client.connect(gateway.url, await world.ticket(u)) for _ in range(2)]
    for tabs in clients.values():
        for c in tabs:
            await c.wait_for(lambda c=c: c.of("unread_count"))
    sent: dict[uuid.UUID, list[str]] = {u: [] for u in users}
    for round_ in range(3):
        for u in users:
            p = await world.notify(u, subject=f"{u}-{round_}")
            sent[u].append(str(p.id))
    for u, tabs in clients.items():
        for c in tabs:
            await c.wait_for(lambda c=c: len(c.notifications()) >= 3, what=f"3 for {u}")
    await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
    for u, tabs in clients.items():
        for c in tabs:
            got = [f["notification"]["id"] for f in c.notifications()]
            assert got == sent[u]
            assert all(f["notification"]["subject"].startswith(str(u)) for f in c.notifications())
            assert [f["cursor"] for f in c.notifications()] == [1, 2, 3]
            await c.close()


async def test_health_ready_metrics(gateway: GatewayProcess) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway.http) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "avisos_gateway_connections" in metrics.text
        assert "avisos_gateway_send_latency_seconds_bucket" in metrics.text
        assert (await http.get("/nope")).status_code == 404
