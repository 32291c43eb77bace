"""What the gateway refuses: before the handshake (HTTP status) and after (close codes)."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import pytest
from gwkit import TICKET_SECRET, Client, GatewayProcess, World, mint_ticket
from websockets.exceptions import InvalidStatus

from avisos_common.messages import SessionRevoked
from avisos_testkit.infra import Backing


async def refused_status(url: str, ticket: str | None, origin: str | None = None) -> int:
    from gwkit import ORIGIN

    target = url if ticket is None else f"{url}?ticket={ticket}"
    with pytest.raises(InvalidStatus) as info:
        await Client.connect(target.split("?")[0], ticket or "", origin=origin or ORIGIN)
    return info.value.response.status_code


async def test_foreign_origin_is_refused_without_burning_the_ticket(
    world: World, gateway: GatewayProcess
) -> None:
    user = await world.user()
    ticket = await world.ticket(user)
    assert await refused_status(gateway.url, ticket, origin="https://evil.example") == 403
    # The ticket was not consumed by the refused attempt.
    client = await Client.connect(gateway.url, ticket)
    await client.wait_for(lambda: client.of("connection_established"))
    await client.close()


async def test_missing_expired_forged_and_reused_tickets(
    world: World, gateway: GatewayProcess
) -> None:
    user = await world.user()
    sid = await world.session(user)
    assert await refused_status(gateway.url, "") == 401
    expired = mint_ticket(user, sid, iat=int(time.time()) - 100, exp=int(time.time()) - 60)
    assert await refused_status(gateway.url, expired) == 401
    wrong_key = jwt.encode(
        {
            "sub": str(user),
            "sid": sid,
            "jti": "j1",
            "iat": int(time.time()),
            "exp": int(time.time()) + 30,
            "aud": "avisos-gateway",
            "iss": "avisos-api",
        },
        "another-secret-of-sufficient-length-123",
        algorithm="HS256",
    )
    assert await refused_status(gateway.url, wrong_key) == 401
    wrong_aud = mint_ticket(user, sid, aud="someone-else")
    assert await refused_status(gateway.url, wrong_aud) == 401

    # alg: none, unsigned.
    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = jwt.decode(
        mint_ticket(user, sid), TICKET_SECRET, algorithms=["HS256"], audience="avisos-gateway"
    )
    none_token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert await refused_status(gateway.url, none_token) == 401
    # HS512 with the right secret is still refused: the algorithm is pinned.
    hs512 = jwt.encode(claims | {"jti": "other"}, TICKET_SECRET, algorithm="HS512")
    assert await refused_status(gateway.url, hs512) == 401
    # Reuse: the first use works, the second is refused.
    ticket = mint_ticket(user, sid)
    first = await Client.connect(gateway.url, ticket)
    await first.wait_for(lambda: first.of("connection_established"))
    assert await refused_status(gateway.url, ticket) == 401
    await first.close()


async def test_logged_out_session_and_inactive_user_are_refused(
    world: World, gateway: GatewayProcess
) -> None:
    user = await world.user()
    sid = await world.session(user)
    await world.redis.delete(f"{world.backing.redis_prefix}session:{sid}")
    assert await refused_status(gateway.url, mint_ticket(user, sid)) == 401
    inactive = await world.user(active=False)
    assert await refused_status(gateway.url, await world.ticket(inactive)) == 403
    # A session of someone else presented with my user id.
    other = await world.user()
    other_sid = await world.session(other)
    assert await refused_status(gateway.url, mint_ticket(user, other_sid)) == 401


async def test_revoked_session_is_disconnected_with_do_not_reconnect_code(
    world: World, gateway: GatewayProcess
) -> None:
    user = await world.user()
    sid_a = await world.session(user)
    sid_b = await world.session(user)
    a = await Client.connect(gateway.url, mint_ticket(user, sid_a))
    b = await Client.connect(gateway.url, mint_ticket(user, sid_b))
    for c in (a, b):
        await c.wait_for(lambda c=c: c.of("unread_count"))
    await world.publish(SessionRevoked(user_id=user, session_id=sid_a, reason="logout"))
    assert await a.wait_closed() == 4500
    assert b.close_code is None
    await world.publish(SessionRevoked(user_id=user, session_id=None, reason="deactivated"))
    assert await b.wait_closed() == 4501


async def test_oversize_message_closes_with_1009(world: World, gateway: GatewayProcess) -> None:
    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user), max_size=None)
    await client.wait_for(lambda: client.of("unread_count"))
    await client.send({"type": "pong", "pad": "x" * (65 * 1024)})
    assert await client.wait_closed() == 1009


async def test_flood_closes_with_rate_limit_code(world: World, gateway: GatewayProcess) -> None:
    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"))
    for _ in range(50):
        try:
            await client.send({"type": "pong"})
        except Exception:
            break
    assert await client.wait_closed() == 4029


async def test_bad_frames_get_errors_not_crashes(world: World, gateway: GatewayProcess) -> None:
    user = await world.user()
    client = await Client.connect(gateway.url, await world.ticket(user))
    await client.wait_for(lambda: client.of("unread_count"))
    await client.ws.send("not json")
    await client.send({"type": "explode", "ref": 7})
    await client.send({"type": "mark_read", "ids": ["not-a-uuid"], "ref": "r1"})
    await client.wait_for(lambda: len(client.of("error")) == 3)
    assert [e["code"] for e in client.of("error")] == ["bad_json", "unknown_type", "bad_ids"]
    assert client.of("error")[1]["ref"] == 7
    await client.send({"type": "get_unread_count", "ref": "u"})
    await client.wait_for(lambda: any(f.get("ref") == "u" for f in client.of("unread_count")))
    await client.ws.send(b"\x00binary")
    assert await client.wait_closed() == 4503


async def test_connection_cap_per_user(world: World, backing: Backing) -> None:
    from gwkit import GatewayProcess as GP

    gw = await GP(backing, AVISOS_MAX_CONNECTIONS_PER_USER="2").start()
    try:
        user = await world.user()
        tabs = [await Client.connect(gw.url, await world.ticket(user)) for _ in range(2)]
        for t in tabs:
            await t.wait_for(lambda t=t: t.of("connection_established"))
        assert await refused_status(gw.url, await world.ticket(user)) == 429
        await tabs[0].close()
        await asyncio.sleep(0.1)
        third = await Client.connect(gw.url, await world.ticket(user))
        await third.wait_for(lambda: third.of("connection_established"))
    finally:
        await gw.stop()


async def test_idle_connection_is_closed(world: World, backing: Backing) -> None:
    from gwkit import GatewayProcess as GP

    gw = await GP(backing, AVISOS_PING_INTERVAL_SECS="0.2", AVISOS_IDLE_TIMEOUT_SECS="0.6").start()
    try:
        user = await world.user()
        client = await Client.connect(gw.url, await world.ticket(user))
        await client.wait_for(lambda: client.of("ping"), what="ping")
        assert await client.wait_closed() == 4000  # never answered with pong
    finally:
        await gw.stop()
