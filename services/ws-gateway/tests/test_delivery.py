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


async def test_one_message_to_many_users(world: World, gateway: GatewayProcess) -> None:
    """A NotificationsCreated reaches every connected recipient, each with its own id,
    seq and unread count, exactly as a NotificationCreated would; nobody else gets it."""
    two_tabs, one_tab, behind, offline, bystander = [await world.user() for _ in range(5)]
    clients = {
        u: [await Client.connect(gateway.url, await world.ticket(u)) for _ in range(n)]
        for u, n in ((two_tabs, 2), (one_tab, 1), (behind, 1), (bystander, 1))
    }
    for tabs in clients.values():
        for c in tabs:
            await c.wait_for(lambda c=c: c.of("unread_count"))
    # `behind` gets a notification that is committed but never announced: the fan-out's
    # seq for it skips one, and the gateway must fill the gap from the database, in order.
    missed = await world.add_notification(behind, subject="missed")
    sent = await world.notify_many([two_tabs, one_tab, behind, offline], subject="Recuento")
    by_user = {r.user_id: r for r in sent.recipients}
    for u in (two_tabs, one_tab):
        for c in clients[u]:
            await c.wait_for(lambda c=c: c.notifications(), what=f"fan-out to {u}")
    (b,) = clients[behind]
    await b.wait_for(lambda: len(b.notifications()) >= 2, what="gap filled then fan-out")
    assert [f["notification"]["id"] for f in b.notifications()] == [
        str(missed.id),
        str(by_user[behind].notification_id),
    ]
    assert [f["cursor"] for f in b.notifications()] == [missed.seq, missed.seq + 1]
    for u in (two_tabs, one_tab):
        r = by_user[u]
        expected = sent.payload_for(r).model_dump(mode="json", exclude={"recipient_id"})
        for c in clients[u]:
            frame = c.notifications()[-1]
            assert frame["type"] == "notification" and frame["cursor"] == r.seq
            assert frame["notification"] == expected
            assert frame["unread"] == r.unread.model_dump(mode="json")
    await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
    assert clients[bystander][0].notifications() == []
    for u, tabs in clients.items():
        for c in tabs:
            assert len(c.notifications()) == {bystander: 0, behind: 2}.get(u, 1)
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


async def test_in_place_update_and_report_status(world: World, gateway: GatewayProcess) -> None:
    from avisos_common.messages import (
        PRIORITIES,
        NotificationUpdated,
        ReportStatusChanged,
        UnreadCount,
    )

    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"))
    first = await world.notify(user, subject="Stock bajo")
    # The alert changes in place: same id, a new seq.
    async with world.pool.acquire() as conn:
        seq = await conn.fetchval(
            "UPDATE users SET notification_seq = notification_seq + 1 WHERE id=$1"
            " RETURNING notification_seq",
            user,
        )
        await conn.execute(
            "UPDATE notifications SET seq=$2, subject='Stock resuelto', updated_at=now()"
            " WHERE id=$1",
            first.id,
            seq,
        )
    updated = first.model_copy(update={"seq": seq, "subject": "Stock resuelto"})
    unread = UnreadCount(total=1, by_priority=dict.fromkeys(PRIORITIES, 0))
    await world.publish(NotificationUpdated(user_id=user, notification=updated, unread=unread))
    job = uuid.uuid4()
    await world.publish(
        ReportStatusChanged(user_id=user, job_id=job, status="running", progress=0.5)
    )
    await client.wait_for(lambda: client.of("report_status"), what="report_status")
    await client.wait_for(lambda: client.of("notification_updated"), what="update")
    upd = client.of("notification_updated")[0]
    assert upd["notification"]["id"] == str(first.id)
    assert upd["cursor"] == 2
    assert upd["notification"]["subject"] == "Stock resuelto"
    report = client.of("report_status")[0]
    assert report == {
        "v": 1,
        "type": "report_status",
        "job_id": str(job),
        "status": "running",
        "progress": 0.5,
        "error": None,
    }
    # A tab reconnecting from cursor 0 gets the current state once, as an update.
    tab = await Client.connect(gateway.url, await world.ticket(user), cursor=0)
    await tab.wait_for(lambda: tab.of("resume"))
    assert [f["type"] for f in tab.notifications()] == ["notification_updated"]
    assert tab.notifications()[0]["notification"]["subject"] == "Stock resuelto"
    for c in (client, tab):
        await c.close()
