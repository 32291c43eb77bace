"""The gateway process: websockets server, handshake checks, message loop, fan-out.

Lifecycle: :meth:`Gateway.start` opens PostgreSQL, Redis, the HTTP client to the API, the
websockets server and then the bus consumer (``/readyz`` turns 200 once consuming);
:meth:`Gateway.drain` (on SIGTERM) refuses new handshakes, closes every socket with 1001
so that clients reconnect to another instance, then closes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
import urllib.parse
import uuid
from http import HTTPStatus
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from avisos_common import logging as avisos_logging
from avisos_common.messages import (
    NotificationCreated,
    NotificationsCreated,
    NotificationUpdated,
    ReadStateChanged,
    ReportStatusChanged,
    SessionRevoked,
    realtime_adapter,
)
from avisos_gateway import protocol
from avisos_gateway.bus import RealtimeConsumer
from avisos_gateway.connection import GatewayConnection, spawn
from avisos_gateway.hub import Hub
from avisos_gateway.metrics import Metrics
from avisos_gateway.settings import GatewaySettings
from avisos_gateway.store import Store
from avisos_gateway.tickets import TicketError, verify_ticket

log = logging.getLogger(__name__)

#: Connections touched per event-loop turn by the keep-alive sweep (keeps the loop fluid).
SWEEP_BATCH = 500
#: The keep-alive sweep handles a slice of the connections this often.
SWEEP_TICK_SECS = 1.0
#: How often an instance refreshes its presence key in Redis, and how long the key lives.
PRESENCE_INTERVAL_SECS = 2.0
PRESENCE_TTL_SECS = 10
#: New connections since the last gc.freeze() that make it worth freezing again.
GC_FREEZE_MIN_GROWTH = 500
#: A replay that cannot be written within this time means the client is too slow.
REPLAY_WRITE_TIMEOUT_SECS = 30.0
PONG_FRAME = '{"v":1,"type":"pong"}'
INTERNAL_TOKEN_HEADER = "X-Avisos-Internal-Token"  # noqa: S105 (a header name)


class Refused(Exception):
    """A handshake refusal: HTTP status and a short reason (for the body and metrics)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.hub = Hub(on_gap=self._on_gap)
        self.metrics.connections.set_function(lambda: self.hub.connections)
        self.metrics.users.set_function(lambda: self.hub.users())
        self.store: Store | None = None
        self.redis: aioredis.Redis | None = None
        self.http: httpx.AsyncClient | None = None
        self.consumer = RealtimeConsumer(
            settings.amqp_url, settings.instance_id, self.on_bus_message
        )
        self.consumer.on_restored = self._on_bus_restored
        self.server: Server | None = None
        self.draining = False
        self._sweeper: asyncio.Task[None] | None = None
        self._presence: asyncio.Task[None] | None = None
        self._catch_up_slots = asyncio.Semaphore(settings.catch_up_concurrency)
        self._origins = settings.origins
        self._gc_frozen_connections = 0
        self._gc_unfrozen_at = time.monotonic()
        self._secret = settings.ticket_secret.get_secret_value()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.open(s.asyncpg_dsn, max_size=s.db_pool_max)
        # Handshakes come in bursts (reconnect storms): wait for a pooled connection
        # instead of failing when the pool is busy.
        self.redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                s.redis_url, max_connections=s.redis_pool_max, timeout=5
            )
        )
        self.http = httpx.AsyncClient(base_url=s.api_internal_url, timeout=s.api_timeout_secs)
        self.server = await serve(
            self._handler,
            s.gateway_host,
            s.gateway_port,
            process_request=self._process_request,
            create_connection=GatewayConnection,
            compression="deflate" if s.compression else None,
            max_size=s.max_message_bytes,
            # A client sends little; a small receive queue bounds memory per connection.
            max_queue=4,
            write_limit=s.write_limit_bytes,
            # Keep-alive is application-level (one sweeper for all), not a task per socket.
            ping_interval=None,
            ping_timeout=None,
            close_timeout=s.close_timeout_secs,
            server_header=None,
        )
        await self.consumer.start()
        self._sweeper = asyncio.create_task(self._sweep_forever())
        self._presence = asyncio.create_task(self._presence_forever())
        log.info(
            "gateway started",
            extra={"port": s.gateway_port, "instance_id": s.instance_id},
        )

    @property
    def ready(self) -> bool:
        return self.consumer.consuming and not self.draining and self.server is not None

    async def drain(self) -> None:
        """Close every socket with 1001 (clients reconnect elsewhere), then shut down."""
        self.draining = True
        log.info("draining", extra={"connections": self.hub.connections})
        if self.server is not None:
            self.server.close(close_connections=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout_secs):
                    await self.server.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._presence is not None:
            self._presence.cancel()
        await self._forget_presence()
        await self.consumer.stop()
        if self.http is not None:
            await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.store is not None:
            await self.store.close()
        log.info("drained")

    # --- handshake ---------------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urllib.parse.urlsplit(request.path)
        if url.path == "/healthz":
            return ws.respond(HTTPStatus.OK, "ok\n")
        if url.path == "/readyz":
            if self.ready:
                return ws.respond(HTTPStatus.OK, "ready\n")
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if url.path == "/metrics":
            return self._metrics_response(ws)
        if url.path != self.settings.ws_path:
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        conn = cast(GatewayConnection, ws)
        try:
            await self._authenticate(conn, request, urllib.parse.parse_qs(url.query))
        except Refused as exc:
            self.metrics.handshakes.labels(exc.reason).inc()
            log.info("handshake refused", extra={"reason": exc.reason})
            return ws.respond(exc.status, f"{exc.reason}\n")
        self.metrics.handshakes.labels("accepted").inc()
        return None

    async def _authenticate(
        self, conn: GatewayConnection, request: Request, query: dict[str, list[str]]
    ) -> None:
        """Check, in order of cost: draining, Origin, ticket, single use, session, user."""
        s = self.settings
        if self.draining:
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "draining")
        origin = (request.headers.get("Origin") or "").rstrip("/")
        if origin not in self._origins:
            raise Refused(HTTPStatus.FORBIDDEN, "origin")
        cursor: int | None = None
        if "cursor" in query:
            try:
                cursor = int(query["cursor"][0])
            except ValueError:
                cursor = -1
            if cursor < 0:
                raise Refused(HTTPStatus.BAD_REQUEST, "bad_cursor")
        try:
            ticket = verify_ticket(
                query.get("ticket", [""])[0],
                secret=self._secret,
                audience=s.ticket_audience,
                issuer=s.ticket_issuer,
                leeway_secs=s.ticket_leeway_secs,
            )
        except TicketError as exc:
            raise Refused(HTTPStatus.UNAUTHORIZED, f"ticket_{exc.reason}") from exc
        assert self.redis is not None
        assert self.store is not None
        prefix = s.redis_prefix
        try:
            # One round trip: consume the ticket and read the session.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(
                    f"{prefix}ticket:{ticket.jti}", "1", nx=True, ex=s.ticket_replay_window_secs
                )
                pipe.get(f"{prefix}session:{ticket.session_id}")
                fresh, session_raw = await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            log.warning("redis unavailable", extra={"error": repr(exc)})
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "redis_unavailable") from exc
        if not fresh:
            raise Refused(HTTPStatus.UNAUTHORIZED, "ticket_reused")
        if session_raw is None:
            raise Refused(HTTPStatus.UNAUTHORIZED, "session_gone")
        try:
            session_user = uuid.UUID(str(json.loads(session_raw)["user_id"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise Refused(HTTPStatus.UNAUTHORIZED, "session_invalid") from exc
        if session_user != ticket.user_id:
            raise Refused(HTTPStatus.UNAUTHORIZED, "session_mismatch")
        if self.hub.was_revoked(ticket.user_id, ticket.session_id):
            raise Refused(HTTPStatus.UNAUTHORIZED, "session_revoked")
        try:
            active = await self.store.user_is_active(ticket.user_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("database unavailable", extra={"error": repr(exc)})
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "db_unavailable") from exc
        if not active:
            raise Refused(HTTPStatus.FORBIDDEN, "user_inactive")
        if self.hub.count_for(ticket.user_id) >= s.max_connections_per_user:
            raise Refused(HTTPStatus.TOO_MANY_REQUESTS, "too_many_connections")
        conn.user_id = ticket.user_id
        conn.session_id = ticket.session_id
        conn.requested_cursor = cursor
        conn.send_buffer_limit = s.send_buffer_limit_bytes

    def _metrics_response(self, ws: ServerConnection) -> Response:
        response = ws.respond(HTTPStatus.OK, generate_latest(self.metrics.registry).decode())
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # --- one connection ----------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        conn = cast(GatewayConnection, ws)
        # The handshake's request and response are no longer needed (~2 KiB per
        # connection, and the path holds the ticket). websockets' parser keeps a reference
        # to the request, so empty it rather than only dropping ours.
        if conn.request is not None:
            conn.request.headers.clear()
            conn.request.path = "/"
        conn.response = None
        # This task's own context (no context manager frame kept alive per connection).
        avisos_logging.set_context(connection_id=str(conn.id), user_id=str(conn.user_id))
        # Registered with ``pending`` set: live frames from now on wait for the catch-up.
        self.hub.add(conn)
        try:
            if self.hub.was_revoked(conn.user_id, conn.session_id):
                await conn.close(protocol.CLOSE_SESSION_REVOKED, "session revoked")
                return
            if await self._open_stream(conn):
                await self._receive_loop(conn)
        except ConnectionClosed:
            pass
        finally:
            self.hub.remove(conn)

    async def _open_stream(self, conn: GatewayConnection) -> bool:
        """Send ``connection_established``, the replay if a cursor was given, the unread
        count, then what arrived meanwhile. False if the connection was closed."""
        assert self.store is not None
        s = self.settings
        cursor = conn.requested_cursor
        try:
            async with self._catch_up_slots:
                max_seq = await self.store.max_seq(conn.user_id)
                established = {
                    "v": protocol.PROTOCOL_VERSION,
                    "type": "connection_established",
                    "connection_id": str(conn.id),
                    "user_id": str(conn.user_id),
                    "cursor": max_seq if cursor is None else cursor,
                    "ping_interval_secs": s.ping_interval_secs,
                    "idle_timeout_secs": s.idle_timeout_secs,
                    "max_message_bytes": s.max_message_bytes,
                }
                conn.write(protocol.encode(established))
                if cursor is None:
                    conn.last_seq = max_seq
                elif cursor > max_seq:
                    # A cursor from the future: another database (restore) or a forged value.
                    conn.last_seq = max_seq
                    self._write_resume(conn, recovered=False, reason="cursor_ahead")
                else:
                    conn.last_seq = cursor
                    if await self._replay(conn, "resume"):
                        self._write_resume(conn, recovered=True)
                    else:
                        conn.last_seq = await self.store.max_seq(conn.user_id)
                        self._write_resume(conn, recovered=False, reason="gap_too_large")
                conn.write(protocol.unread_frame(await self.store.unread(conn.user_id)))
        except ConnectionClosed:
            return False
        except Exception:
            log.exception("opening the stream failed")
            await conn.close(protocol.CLOSE_INTERNAL_ERROR, "try again")
            return False
        self.hub.finish_catch_up(conn)
        return True

    def _write_resume(self, conn: GatewayConnection, *, recovered: bool, reason: str = "") -> None:
        frame: dict[str, Any] = {
            "v": protocol.PROTOCOL_VERSION,
            "type": "resume",
            "recovered": recovered,
            "cursor": conn.last_seq,
        }
        if reason:
            frame["reason"] = reason
        self.metrics.replays.labels("resume", "recovered" if recovered else "not_recovered").inc()
        conn.write(protocol.encode(frame))

    async def _replay(self, conn: GatewayConnection, reason: str) -> bool:
        """Write every notification after ``conn.last_seq``; False (nothing written) if
        there are more than ``replay_limit``."""
        assert self.store is not None
        limit = self.settings.replay_limit
        items = await self.store.replay(conn.user_id, conn.last_seq, limit + 1)
        if len(items) > limit:
            return False
        async with asyncio.timeout(REPLAY_WRITE_TIMEOUT_SECS):
            for item in items:
                frame = protocol.notification_frame(
                    item, updated=item.updated_at is not None, replayed=True
                )
                if not conn.write(frame):
                    break
                conn.last_seq = item.seq
                if conn.paused:  # over write_limit: let this client's socket drain first
                    await conn.drain()
        self.metrics.replayed.inc(len(items))
        return True

    def _on_gap(self, conn: GatewayConnection) -> None:
        spawn(self._repair_gap(conn))

    async def _repair_gap(self, conn: GatewayConnection) -> None:
        """A live message skipped a seq: read the missing ones from PostgreSQL."""
        assert self.store is not None
        try:
            async with self._catch_up_slots:
                if await self._replay(conn, "gap"):
                    self.metrics.replays.labels("gap", "recovered").inc()
                else:
                    conn.last_seq = await self.store.max_seq(conn.user_id)
                    self._write_resume(conn, recovered=False, reason="gap_too_large")
        except Exception:
            log.exception("gap repair failed")
            conn.kick(protocol.CLOSE_INTERNAL_ERROR, "try again")
            return
        self.hub.finish_catch_up(conn)

    def _on_bus_restored(self) -> None:
        # Messages published while the broker link was down are lost for this instance:
        # every connection re-reads what it may have missed.
        for conn in list(self.hub.all()):
            if conn.pending is None and conn.is_open:
                conn.pending = []
                self._on_gap(conn)

    async def _receive_loop(self, conn: GatewayConnection) -> None:
        s = self.settings
        async for raw in conn:
            now = time.monotonic()
            conn.last_rx = now
            if not isinstance(raw, str):
                self.metrics.drops.labels("binary_frame").inc()
                await conn.close(protocol.CLOSE_POLICY, "text frames only")
                return
            if not conn.take_token(s.rate_limit_per_sec, s.rate_limit_burst, now):
                self.metrics.drops.labels("rate_limited").inc()
                await conn.close(protocol.CLOSE_RATE_LIMITED, "too many messages")
                return
            if raw == PONG_FRAME:  # the frame every client sends most: no parsing
                continue
            try:
                msg = protocol.parse_client_message(raw)
            except protocol.ClientMessageError as exc:
                conn.write(protocol.error_frame(exc.code, exc.detail, exc.ref))
                if exc.code == "unsupported_version":
                    await conn.close(protocol.CLOSE_UNSUPPORTED_VERSION, "unsupported version")
                    return
                continue
            if msg.type == "pong":
                continue
            if msg.type == "get_unread_count":
                assert self.store is not None
                unread = await self.store.unread(conn.user_id)
                conn.write(protocol.unread_frame(unread, ref=msg.ref))
            elif msg.type == "mark_read":
                await self._mark_read(conn, msg)

    async def _mark_read(self, conn: GatewayConnection, msg: protocol.ClientMessage) -> None:
        """Forward to the API, which owns read state and tells every tab via the bus."""
        assert self.http is not None
        body: dict[str, Any] = {"all": True} if msg.all else {"ids": [str(i) for i in msg.ids]}
        path = f"/internal/v1/users/{conn.user_id}/notifications/read"
        headers = {INTERNAL_TOKEN_HEADER: self.settings.internal_token.get_secret_value()}
        rid = avisos_logging.new_request_id()
        headers[avisos_logging.REQUEST_ID_HEADER] = rid
        try:
            resp = await self.http.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("mark_read: API unreachable", extra={"error": str(exc)})
            conn.write(protocol.error_frame("mark_read_failed", "try again", msg.ref))
            return
        if resp.status_code != HTTPStatus.OK:
            log.warning("mark_read: API refused", extra={"status": resp.status_code})
            conn.write(protocol.error_frame("mark_read_failed", f"api {resp.status_code}", msg.ref))
            return
        answer = resp.json()
        conn.write(
            protocol.encode(
                {
                    "v": protocol.PROTOCOL_VERSION,
                    "type": "mark_read_result",
                    "ref": msg.ref,
                    "updated": answer.get("updated"),
                    "unread": answer.get("unread"),
                }
            )
        )

    # --- keep-alive --------------------------------------------------------------------

    # --- presence (for the admin System screen) -----------------------------------------

    def _presence_key(self) -> str:
        return f"{self.settings.redis_prefix}presence:gateway:{self.settings.instance_id}"

    async def _presence_forever(self) -> None:
        """Publish this instance's connection counts in Redis every
        ``PRESENCE_INTERVAL_SECS``; the key expires if the instance dies, so the API's
        ``/v1/admin/system`` sums only live gateways."""
        while True:
            try:
                assert self.redis is not None
                await self.redis.set(
                    self._presence_key(),
                    json.dumps(
                        {
                            "instance": self.settings.instance_id,
                            "users": self.hub.users(),
                            "connections": self.hub.connections,
                            "ready": self.ready,
                            "at": time.time(),
                        }
                    ),
                    ex=PRESENCE_TTL_SECS,
                )
            except Exception as exc:  # presence is best-effort: never let it stop
                log.warning("presence not written", extra={"error": repr(exc)})
            await asyncio.sleep(PRESENCE_INTERVAL_SECS)

    async def _forget_presence(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self.redis.delete(self._presence_key())

    async def _sweep_forever(self) -> None:
        """Ping and idle-check every connection once per ping interval, a slice per tick:
        pinging 10,000 sockets at once makes 10,000 pongs arrive at once, a latency spike
        for every notification in flight."""
        interval = self.settings.ping_interval_secs
        slices = max(1, round(interval / SWEEP_TICK_SECS))
        tick = interval / slices
        n = 0
        while True:
            await asyncio.sleep(tick)
            try:
                await self.sweep(slice_index=n % slices, slices=slices)
                self._manage_gc()
            except Exception:
                log.exception("sweep failed")
            n += 1

    def _manage_gc(self) -> None:
        """Keep full garbage collections out of connection surges.

        CPython runs a full collection each time the long-lived objects grow by 25 %; while
        10,000 clients reconnect that is several pauses of 0.1-0.5 s (measured), each
        stalling every socket. Connections are long-lived, so once the count has grown,
        freeze what exists (frozen objects are not scanned). Cyclic garbage among frozen
        objects is only reclaimed after an unfreeze, which happens every
        ``gc_unfreeze_interval_secs`` (one full collection, at a known rate)."""
        now = time.monotonic()
        if now - self._gc_unfrozen_at > self.settings.gc_unfreeze_interval_secs:
            gc.unfreeze()
            self._gc_unfrozen_at = now
            self._gc_frozen_connections = 0
            return
        grown = self.hub.connections - self._gc_frozen_connections
        if grown > max(GC_FREEZE_MIN_GROWTH, self._gc_frozen_connections // 10):
            gc.freeze()
            self._gc_frozen_connections = self.hub.connections

    async def sweep(self, slice_index: int = 0, slices: int = 1) -> None:
        """Ping the connections of one slice; close those silent for longer than the idle
        timeout. ``slices=1`` sweeps every connection."""
        cutoff = time.monotonic() - self.settings.idle_timeout_secs
        for i, conn in enumerate(list(self.hub.all())):
            if slices > 1 and hash(conn) % slices != slice_index:
                continue
            if conn.last_rx < cutoff:
                self.metrics.drops.labels("idle").inc()
                conn.kick(protocol.CLOSE_IDLE_TIMEOUT, "idle timeout")
            elif conn.pending is None:
                conn.write(protocol.PING_FRAME)
            if i % SWEEP_BATCH == SWEEP_BATCH - 1:
                await asyncio.sleep(0)

    # --- bus ---------------------------------------------------------------------------

    def on_bus_message(self, body: bytes, request_id: str | None = None) -> None:
        """Route one realtime message to the connections of its user(s) (synchronous).

        No automatic garbage collection runs meanwhile. A fan-out chunk is ~2,000 tracked
        objects, all freed by reference counting when it is done; left on, the collector
        ran several times per chunk, promoted the live chunk to older generations, and
        ended in a full collection over every connection's objects: the fan-out to
        10,000 users spent more time there than pushing (bench/gateway)."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._route(body, request_id)
        finally:
            if was_enabled:
                gc.enable()

    def _route(self, body: bytes, request_id: str | None) -> None:
        """A notification pushed to local connections is logged once, with the request id
        it was created under, so an operator can follow it from the event to the socket."""
        try:
            msg = realtime_adapter.validate_json(body)
        except ValidationError:
            self.metrics.bus_messages.labels("invalid").inc()
            log.warning("invalid realtime message", extra={"body": body[:200]})
            return
        self.metrics.bus_messages.labels(msg.kind).inc()
        if isinstance(msg, NotificationsCreated):
            self._fan_out(msg, request_id)
            return
        user = msg.user_id
        if isinstance(msg, SessionRevoked):
            code = (
                protocol.CLOSE_USER_REVOKED
                if msg.session_id is None
                else protocol.CLOSE_SESSION_REVOKED
            )
            for conn in self.hub.revoke(user, msg.session_id):
                self.metrics.drops.labels("revoked").inc()
                conn.kick(code, msg.reason[:100] or "revoked")
            return
        if user not in self.hub.by_user:
            return
        before = self.hub.pushed
        if isinstance(msg, NotificationCreated | NotificationUpdated):
            frame = protocol.notification_frame(
                msg.notification,
                updated=isinstance(msg, NotificationUpdated),
                unread=msg.unread,
            )
            sent = self.hub.deliver(user, msg.notification.seq, frame)
            self.metrics.send_latency.observe(time.time() - msg.produced_at.timestamp())
            log.info(
                "pushed",
                extra={
                    "request_id": request_id,
                    "user_id": str(user),
                    "notification_id": str(msg.notification.id),
                    "seq": msg.notification.seq,
                    "connections": sent,
                },
            )
        elif isinstance(msg, ReadStateChanged):
            self.hub.deliver(user, None, protocol.read_confirmation_frame(msg))
            self.hub.deliver(user, None, protocol.unread_frame(msg.unread))
        elif isinstance(msg, ReportStatusChanged):
            self.hub.deliver(user, None, protocol.report_status_frame(msg))
        self.metrics.pushed.inc(self.hub.pushed - before)

    def _fan_out(self, msg: NotificationsCreated, request_id: str | None) -> None:
        """Write one notification to every recipient of ``msg`` this instance holds, each
        its own frame (id, seq, unread differ; the shared content is encoded once).

        Logged once per message, not per recipient: at 10,000 recipients a line each
        would cost more than the pushing."""
        held = self.hub.by_user
        frames: protocol.SharedNotificationFrames | None = None
        produced = msg.produced_at.timestamp()
        before = self.hub.pushed
        recipients = connections = 0
        for r in msg.recipients:
            conns = held.get(r.user_id)
            if not conns:
                continue
            if frames is None:
                frames = protocol.SharedNotificationFrames(msg.notification)
            connections += self.hub.deliver_to(conns, r.seq, frames.frame(r))
            recipients += 1
        if not recipients:
            return
        self.metrics.send_latency.observe(time.time() - produced)
        self.metrics.pushed.inc(self.hub.pushed - before)
        log.info(
            "pushed",
            extra={
                "request_id": request_id,
                "message_id": str(msg.message_id),
                "source_event_id": msg.notification.source_event_id,
                "recipients": recipients,
                "of_recipients": len(msg.recipients),
                "connections": connections,
            },
        )
