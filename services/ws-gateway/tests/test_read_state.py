"""Read state is shared: mark_read on one tab updates the other tabs' counters.

The API's internal endpoint is stood in by a tiny local HTTP server that does what the
API contract says (update the rows, answer the counts, publish ``notification.read_state``)
until the real API lands; the gateway under test is the real process."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from gwkit import INTERNAL_TOKEN, Client, GatewayProcess, World

from avisos_common.messages import ReadStateChanged


@pytest.fixture(scope="module")
async def api_stub(world: World, api_stub_port: int) -> AsyncIterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    async def mark_read(request: web.Request) -> web.Response:
        if request.headers.get("X-Avisos-Internal-Token") != INTERNAL_TOKEN:
            return web.json_response({"detail": "forbidden"}, status=403)
        user = uuid.UUID(request.match_info["user_id"])
        body = await request.json()
        calls.append({"user": user, "body": body})
        now = dt.datetime.now(dt.UTC)
        if body.get("all"):
            status = await world.pool.execute(
                "UPDATE notifications SET read_at=$2 WHERE recipient_id=$1 AND read_at IS NULL",
                user,
                now,
            )
            ids: list[uuid.UUID] = []
        else:
            ids = [uuid.UUID(i) for i in body["ids"]]
            status = await world.pool.execute(
                "UPDATE notifications SET read_at=$2 WHERE recipient_id=$1 AND id = ANY($3)"
                " AND read_at IS NULL",
                user,
                now,
                ids,
            )
        unread = await world.unread(user)
        await world.publish(
            ReadStateChanged(
                user_id=user, notification_ids=ids, all=bool(body.get("all")), unread=unread
            )
        )
        return web.json_response(
            {"updated": int(status.split()[-1]), "unread": unread.model_dump()}
        )

    app = web.Application()
    app.router.add_post("/internal/v1/users/{user_id}/notifications/read", mark_read)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", api_stub_port)
    await site.start()
    try:
        yield calls
    finally:
        await runner.cleanup()


async def test_mark_read_on_one_tab_updates_the_other(
    world: World, gateway: GatewayProcess, api_stub: list[dict[str, Any]]
) -> None:
    user = await world.user()
    tab1 = await Client.connect(gateway.url, await world.ticket(user))
    tab2 = await Client.connect(gateway.url, await world.ticket(user))
    n1 = await world.notify(user, priority="high")
    await world.notify(user, priority="low")
    for t in (tab1, tab2):
        await t.wait_for(lambda t=t: len(t.notifications()) == 2)

    await tab1.send({"type": "mark_read", "ids": [str(n1.id)], "ref": "m1"})
    for t in (tab1, tab2):
        await t.wait_for(lambda t=t: t.of("notification_read_confirmation"), what="confirmation")
        conf = t.of("notification_read_confirmation")[0]
        assert conf["ids"] == [str(n1.id)]
        assert conf["read"] is True
        await t.wait_for(lambda t=t: t.of("unread_count")[-1]["total"] == 1, what="count 1")
        assert t.of("unread_count")[-1]["by_priority"]["high"] == 0
        assert t.of("unread_count")[-1]["by_priority"]["low"] == 1
    await tab1.wait_for(lambda: tab1.of("mark_read_result"))
    assert tab1.of("mark_read_result")[0]["ref"] == "m1"
    assert tab1.of("mark_read_result")[0]["updated"] == 1
    assert not tab2.of("mark_read_result")
    assert api_stub[-1] == {"user": user, "body": {"ids": [str(n1.id)]}}

    await tab2.send({"type": "mark_read", "all": True})
    for t in (tab1, tab2):
        await t.wait_for(lambda t=t: t.of("unread_count")[-1]["total"] == 0, what="count 0")
        assert t.of("notification_read_confirmation")[-1]["all"] is True
    for t in (tab1, tab2):
        await t.close()
