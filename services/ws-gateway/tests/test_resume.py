"""No silent gaps: cursors, replay on reconnect, gap repair, the too-large-gap answer."""

from __future__ import annotations

import asyncio
import uuid

from gwkit import Client, GatewayProcess, World

from avisos_common.messages import PRIORITIES, NotificationCreated, UnreadCount

UNREAD0 = UnreadCount(total=0, by_priority=dict.fromkeys(PRIORITIES, 0))


def cursors(frames: list[dict[str, object]]) -> list[int]:
    return [int(f["cursor"]) for f in frames]  # type: ignore[call-overload]


async def test_reconnect_during_a_burst_of_500_misses_nothing(
    world: World, gateway: GatewayProcess
) -> None:
    user = await world.user()
    first = await Client.connect(gateway.url, await world.ticket(user))
    await first.wait_for(lambda: first.of("unread_count"))

    async def burst() -> None:
        for i in range(500):
            await world.notify(user, subject=f"n{i}")

    producer = asyncio.create_task(burst())
    await first.wait_for(lambda: len(first.notifications()) >= 100, what="100 live")
    await first.ws.close()  # the tab loses its connection mid-burst
    await first.wait_closed()
    got_first = first.notifications()
    last = got_first[-1]["cursor"]
    await asyncio.sleep(0.2)  # more notifications are committed while it is away
    second = await Client.connect(gateway.url, await world.ticket(user), cursor=last)
    await producer
    await second.wait_for(
        lambda: second.notifications() and second.notifications()[-1]["cursor"] == 500,
        timeout=20,
        what="all 500",
    )
    assert second.of("resume")[0]["recovered"] is True
    everything = cursors(got_first) + cursors(second.notifications())
    assert everything == list(range(1, 501))  # all, in order, none twice
    subjects = [f["notification"]["subject"] for f in got_first + second.notifications()]
    assert subjects == [f"n{i}" for i in range(500)]
    assert any(f.get("replayed") for f in second.notifications())
    await second.close()


async def test_gap_too_large_answers_not_recovered(world: World, gateway: GatewayProcess) -> None:
    user = await world.user()
    await world.pool.execute(
        "WITH s AS (UPDATE users SET notification_seq = 510 WHERE id = $1 RETURNING id)"
        " INSERT INTO notifications (id, recipient_id, seq, type, category, subject, message,"
        " priority, data) SELECT gen_random_uuid(), $1, g, 't', 'c', 's', 'm', 'low', '{}'"
        " FROM generate_series(1, 510) g",
        user,
    )
    far = await Client.connect(gateway.url, await world.ticket(user), cursor=0)
    await far.wait_for(lambda: far.of("resume"))
    resume = far.of("resume")[0]
    assert resume == {
        "v": 1,
        "type": "resume",
        "recovered": False,
        "cursor": 510,
        "reason": "gap_too_large",
    }
    assert far.notifications() == []
    await far.wait_for(lambda: far.of("unread_count"))
    assert far.of("unread_count")[0]["total"] == 510
    assert far.of("unread_count")[0]["by_priority"]["low"] == 510
    near = await Client.connect(gateway.url, await world.ticket(user), cursor=505)
    await near.wait_for(lambda: near.of("resume"))
    assert cursors(near.notifications()) == [506, 507, 508, 509, 510]
    assert near.of("resume")[0]["recovered"] is True
    ahead = await Client.connect(gateway.url, await world.ticket(user), cursor=9999)
    await ahead.wait_for(lambda: ahead.of("resume"))
    assert ahead.of("resume")[0]["recovered"] is False
    for c in (far, near, ahead):
        await c.close()


async def test_lost_live_message_is_repaired_from_postgres(
    world: World, gateway: GatewayProcess
) -> None:
    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"))
    n1 = await world.notify(user)
    lost = await world.add_notification(user)  # committed, but its bus message never arrives
    n3 = await world.notify(user)
    await client.wait_for(lambda: len(client.notifications()) == 3, what="3 notifications")
    assert [f["notification"]["id"] for f in client.notifications()] == [
        str(n1.id),
        str(lost.id),
        str(n3.id),
    ]
    # A duplicate delivery (redelivery, two publishers) is dropped.
    await world.publish(NotificationCreated(user_id=user, notification=n3, unread=UNREAD0))
    n4 = await world.notify(user)
    await client.wait_for(lambda: len(client.notifications()) == 4)
    assert cursors(client.notifications()) == [1, 2, 3, 4]
    assert client.notifications()[-1]["notification"]["id"] == str(n4.id)
    await client.close()


async def test_unknown_user_messages_are_ignored(world: World, gateway: GatewayProcess) -> None:
    # A message for a user nobody holds here must not disturb anything.
    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"))
    stranger = await world.user()
    await world.notify(stranger)
    await world.publisher.publish("avisos.realtime", "", b'{"kind": "garbage"}', mandatory=False)
    mine = await world.notify(user)
    await client.wait_for(lambda: client.notifications())
    assert [f["notification"]["id"] for f in client.notifications()] == [str(mine.id)]
    assert uuid.UUID(client.of("connection_established")[0]["user_id"]) == user
    await client.close()
