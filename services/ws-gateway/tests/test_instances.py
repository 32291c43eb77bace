"""Several gateway processes: routing through the fanout, and failover without loss."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from gwkit import Client, GatewayProcess, World

from avisos_testkit.infra import Backing


@pytest.fixture
async def pair(backing: Backing) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    a, b = GatewayProcess(backing), GatewayProcess(backing)
    await asyncio.gather(a.start(), b.start())
    try:
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_two_instances_route_exactly_and_survive_a_kill(
    world: World, pair: tuple[GatewayProcess, GatewayProcess]
) -> None:
    a, b = pair
    users = [await world.user() for _ in range(20)]
    home = {u: (a if i % 2 == 0 else b) for i, u in enumerate(users)}
    clients = {u: await Client.connect(home[u].url, await world.ticket(u)) for u in users}
    for c in clients.values():
        await c.wait_for(lambda c=c: c.of("unread_count"))
    sent: dict[uuid.UUID, list[str]] = {u: [] for u in users}
    for u in users:
        sent[u].append(str((await world.notify(u, subject=str(u))).id))
    for c in clients.values():
        await c.wait_for(lambda c=c: len(c.notifications()) == 1)

    stop = asyncio.Event()

    async def stream() -> None:
        i = 0
        while not stop.is_set() or i < 10:
            for u in users:
                sent[u].append(str((await world.notify(u, subject=str(u))).id))
            i += 1

    producer = asyncio.create_task(stream())
    await asyncio.sleep(0.3)
    a.kill()  # SIGKILL mid-stream: no drain, no goodbye
    moved = [u for u in users if home[u] is a]
    for u in moved:
        await clients[u].wait_closed()
        last = clients[u].notifications()[-1]["cursor"]
        old = clients[u]
        clients[u] = await Client.connect(b.url, await world.ticket(u), cursor=last)
        clients[u].frames[:0] = old.notifications()  # the tab keeps what it had
    await asyncio.sleep(0.3)
    stop.set()
    await producer
    for u, c in clients.items():
        await c.wait_for(
            lambda c=c, u=u: len(c.notifications()) >= len(sent[u]), timeout=15, what=str(u)
        )
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    for u, c in clients.items():
        got = [f["notification"]["id"] for f in c.notifications()]
        assert got == sent[u], f"user {u} on {'a' if home[u] is a else 'b'}"
        assert all(f["notification"]["subject"] == str(u) for f in c.notifications())
    for c in clients.values():
        await c.close()


async def test_sigterm_drains_with_1001(world: World, backing: Backing) -> None:
    gw = await GatewayProcess(backing).start()
    user = await world.user()
    client = await Client.connect(gw.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"))
    gw.terminate()
    assert await client.wait_closed() == 1001
    assert gw.proc is not None
    await asyncio.get_running_loop().run_in_executor(None, gw.proc.wait, 10)
    assert gw.proc.returncode == 0
