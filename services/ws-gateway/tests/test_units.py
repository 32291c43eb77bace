"""Fast unit tests (no services): tickets, client frame parsing, the hub's cursor rule."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from avisos_common.messages import (
    NotificationContent,
    NotificationsCreated,
    Recipient,
    UnreadCount,
)
from avisos_gateway import protocol
from avisos_gateway.hub import Hub
from avisos_gateway.tickets import TicketError, verify_ticket

SECRET = "unit-secret-" + "z" * 32


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "sid": "s" * 64,
        "jti": "j1",
        "iat": now,
        "exp": now + 30,
        "aud": "avisos-gateway",
        "iss": "avisos-api",
    }
    base.update(over)
    return base


def check(token: str) -> str:
    try:
        verify_ticket(token, secret=SECRET, audience="avisos-gateway", issuer="avisos-api")
    except TicketError as exc:
        return exc.reason
    return "ok"


def test_ticket_rules() -> None:
    assert check(jwt.encode(claims(), SECRET, algorithm="HS256")) == "ok"
    assert check("") == "missing"
    assert check("x" * 5000) == "too_long"
    assert check("not.a.jwt") == "invalid"
    assert check(jwt.encode(claims(), SECRET, algorithm="HS384")) == "bad_algorithm"
    assert check(jwt.encode(claims(), "other-" + SECRET, algorithm="HS256")) == "bad_signature"
    now = int(time.time())
    assert check(jwt.encode(claims(iat=now - 90, exp=now - 60), SECRET)) == "expired"
    assert check(jwt.encode(claims(iss="evil"), SECRET)) == "invalid"
    no_sid = claims()
    del no_sid["sid"]
    assert check(jwt.encode(no_sid, SECRET)) == "invalid"
    assert check(jwt.encode(claims(exp=now + 3600), SECRET)) == "lifetime_too_long"
    assert check(jwt.encode(claims(sub="not-a-uuid"), SECRET)) == "bad_claims"


def test_client_frames() -> None:
    assert protocol.parse_client_message('{"type":"pong"}').type == "pong"
    msg = protocol.parse_client_message(
        json.dumps({"v": 1, "type": "mark_read", "ids": [str(uuid.UUID(int=1))], "ref": "a"})
    )
    assert msg.ids == (uuid.UUID(int=1),)
    assert msg.ref == "a"
    assert protocol.parse_client_message('{"type":"mark_read","all":true}').all
    for raw, code in [
        ("[]", "bad_frame"),
        ("{", "bad_json"),
        ('{"type":"x"}', "unknown_type"),
        ('{"type":"pong","v":2}', "unsupported_version"),
        ('{"type":"mark_read","ids":[]}', "bad_ids"),
        (json.dumps({"type": "mark_read", "ids": ["a" * 10]}), "bad_ids"),
        ('{"type":"pong","ref":{"a":1}}', "bad_ref"),
        (json.dumps({"type": "mark_read", "ids": [str(uuid.uuid4())] * 501}), "bad_ids"),
    ]:
        with pytest.raises(protocol.ClientMessageError) as info:
            protocol.parse_client_message(raw)
        assert info.value.code == code, raw


def test_shared_frames_equal_the_single_recipient_frame() -> None:
    """The fan-out path splices bytes; it must parse to what the one-user path gives."""
    content = NotificationContent(
        type="stock.low",
        category="inventory",
        subject='Stock "bajo" en Almacén \\ 7',
        message="quedan 3\nunidades",
        priority="high",
        data={"sku": "SKU-1", "qty": 3, "nested": {"ok": True}},
        action_url="/stock/SKU-1",
        source_event_id="evt-1",
        created_at=dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC),
    )
    unread = UnreadCount(total=4, by_priority={"low": 0, "normal": 1, "high": 3, "critical": 0})
    other = UnreadCount(total=1, by_priority={"low": 0, "normal": 0, "high": 1, "critical": 0})
    msg = NotificationsCreated(
        notification=content,
        recipients=[  # unread counts shared and not: each frame must carry its own
            Recipient(user_id=uuid.uuid4(), notification_id=uuid.uuid4(), seq=s, unread=u)
            for s, u in ((1, unread), (41, other), (7, unread), (10**9, other))
        ],
    )
    frames = protocol.SharedNotificationFrames(msg.notification)
    for r in msg.recipients:
        one = protocol.notification_frame(msg.payload_for(r), updated=False, unread=r.unread)
        assert json.loads(frames.frame(r)) == json.loads(one)


def test_close_code_classes() -> None:
    for code in (1000, 1001, 1006, 1011, 1012, 1013, 4000, 4001, 4029, 4499):
        assert protocol.should_reconnect(code), code
    for code in (1002, 1008, 1009, 4500, 4501, 4502, 4503, 4999):
        assert not protocol.should_reconnect(code), code


class FakeConn:
    """Stands in for GatewayConnection in the hub: records what is written."""

    def __init__(self, user: uuid.UUID, session: str = "s") -> None:
        self.user_id = user
        self.session_id = session
        self.last_seq = 0
        self.pending: list[tuple[int | None, bytes]] | None = None
        self.written: list[bytes] = []
        self.kicked: tuple[int, str] | None = None

    def write(self, data: bytes) -> bool:
        self.written.append(data)
        return True

    def kick(self, code: int, reason: str) -> None:
        self.kicked = (code, reason)


def test_hub_cursor_rule_dedup_gap_and_merge() -> None:
    gaps: list[Any] = []
    hub = Hub(on_gap=gaps.append)
    user = uuid.uuid4()
    conn = FakeConn(user)
    hub.add(conn)  # type: ignore[arg-type]
    assert hub.deliver(user, 1, b"n1") == 1
    assert hub.deliver(user, 1, b"n1-again") == 0  # duplicate
    assert hub.deliver(user, None, b"count") == 1  # frames without seq always go
    assert hub.deliver(user, 3, b"n3") == 0  # seq 2 missing: catch up first
    assert gaps == [conn]
    assert conn.pending == [(3, b"n3")]
    hub.deliver(user, 4, b"n4")
    hub.deliver(user, None, b"count2")
    # The catch-up wrote seq 2 and 3 from the database...
    conn.written += [b"db2", b"db3"]
    conn.last_seq = 3
    # ...then what waited is merged: 3 is dropped, 4 and the count go out.
    assert hub.finish_catch_up(conn) == 2  # type: ignore[arg-type]
    assert conn.written == [b"n1", b"count", b"db2", b"db3", b"n4", b"count2"]
    assert conn.pending is None
    assert conn.last_seq == 4
    assert hub.deliver(uuid.uuid4(), 1, b"other user") == 0


def test_hub_isolation_and_revocation() -> None:
    hub = Hub(on_gap=lambda c: None)
    a, b = uuid.uuid4(), uuid.uuid4()
    a1, a2, b1 = FakeConn(a, "sa1"), FakeConn(a, "sa2"), FakeConn(b, "sb")
    for c in (a1, a2, b1):
        hub.add(c)  # type: ignore[arg-type]
    hub.deliver(a, 1, b"for-a")
    assert a1.written == a2.written == [b"for-a"]
    assert b1.written == []
    assert hub.revoke(a, "sa1") == [a1]  # type: ignore[comparison-overlap]
    assert hub.was_revoked(a, "sa1")
    assert not hub.was_revoked(a, "sa2")
    assert set(hub.revoke(a, None)) == {a1, a2}  # type: ignore[comparison-overlap]
    assert hub.was_revoked(a, "any-session")
    hub.remove(a1)  # type: ignore[arg-type]
    hub.remove(a1)  # type: ignore[arg-type]  # idempotent
    assert hub.connections == 2
    assert hub.users() == 2


class FakeTransport:
    def __init__(self) -> None:
        self.buffered = 0
        self.data: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


async def test_slow_client_is_kicked_instead_of_buffering_without_bound() -> None:
    from websockets.asyncio.connection import Connection
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    from avisos_gateway.connection import GatewayConnection

    proto = ServerProtocol()
    proto.state = State.OPEN
    conn = GatewayConnection(proto, server=None)  # type: ignore[arg-type]
    transport = FakeTransport()
    # The base class's hook: wires the transport without starting a handler task.
    Connection.connection_made(conn, transport)  # type: ignore[arg-type]
    conn.send_buffer_limit = 1000
    kicked: list[tuple[int, str]] = []
    conn.kick = lambda code, reason: kicked.append((code, reason))  # type: ignore[method-assign]
    assert conn.write(b"x" * 100)
    assert transport.data  # written at once, nothing awaited
    transport.buffered = 950  # the client stopped reading
    assert not conn.write(b"y" * 100)
    assert kicked == [(protocol.CLOSE_SLOW_CONSUMER, "slow consumer")]
    assert isinstance(conn.drain_waiters, list)
    assert not hasattr(conn, "__dict__") or "user_id" not in conn.__dict__
