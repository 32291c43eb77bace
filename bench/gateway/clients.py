"""Client worker processes of the gateway benchmark.

Each worker holds a share of the connections and records, for every pushed frame, the
delay from its ``t0`` (set by the publisher) to its arrival. The controller drives
workers over a pipe with small commands (see :func:`worker_main`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

CONNECT_CONCURRENCY = 64


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    #: (t0 stamped by the producer, arrival time) of each notification, for the phases
    #: that time from an event the producer only knows afterwards (a commit).
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    received: int = 0
    last_rx: float = 0.0
    connected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    #: Keep-alive pings received, per connection (index = order of connecting).
    pings: list[int] = field(default_factory=list)
    #: ``pings`` when the controller last asked to mark them (``mark_pings``).
    pings_marked: list[int] = field(default_factory=list)
    #: Set whenever a connection attempt ends (connected or failed).
    progress: asyncio.Event = field(default_factory=asyncio.Event)


def _ticket(secret: str, user: str, sid: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {
            "sub": user,
            "sid": sid,
            "jti": f"{user}-{time.monotonic_ns()}",
            "iat": now,
            "exp": now + 30,
            "aud": "avisos-gateway",
            "iss": "avisos-api",
        },
        secret,
        algorithm="HS256",
    )


async def _hold(
    kind: str,
    base: str,
    origin: str,
    user: str,
    sid: str,
    secret: str,
    stats: Stats,
    gate: asyncio.Semaphore,
    sockets: list[ClientConnection],
) -> None:
    async with gate:
        try:
            if kind == "avisos":
                url = f"{base}?ticket={_ticket(secret, user, sid)}"
            elif kind == "socketio":
                url = f"{base}/socket.io/?EIO=4&transport=websocket&user={user}"
            else:
                url = f"{base}?user={user}"
            ws = await connect(
                url,
                origin=Origin(origin),
                compression=None,
                ping_interval=None,  # type: ignore[arg-type]
                open_timeout=120,
                close_timeout=1,
                max_size=2**20,
            )
            if kind == "socketio":
                await ws.recv()  # engine.io open packet
                await ws.send("40")
                await ws.recv()  # namespace connected
            elif kind == "avisos":
                await ws.recv()  # connection_established
        except Exception as exc:
            stats.failed += 1
            if len(stats.errors) < 5:
                stats.errors.append(repr(exc))
            stats.progress.set()
            return
        stats.connected += 1
        stats.progress.set()
        sockets.append(ws)
        slot = len(stats.pings)
        stats.pings.append(0)
    try:
        async for msg in ws:
            now = time.time()
            if kind == "avisos":
                if isinstance(msg, str) and msg.startswith('{"v":1,"type":"notification"'):
                    frame = json.loads(msg)
                    t0 = frame["notification"]["data"]["t0"]
                    stats.latencies.append(now - t0)
                    stats.arrivals.append((t0, now))
                    stats.received += 1
                    stats.last_rx = now
                elif msg == '{"v":1,"type":"ping"}':
                    stats.pings[slot] += 1
                    await ws.send('{"v":1,"type":"pong"}')
            elif kind == "socketio":
                if msg == "2":
                    await ws.send("3")
                elif isinstance(msg, str) and msg.startswith("42"):
                    stats.latencies.append(now - json.loads(msg[2:])[1]["t0"])
                    stats.received += 1
                    stats.last_rx = now
            else:
                stats.latencies.append(now - json.loads(msg)["t0"])
                stats.received += 1
                stats.last_rx = now
    except Exception:  # noqa: S110 - a dropped socket is counted by the controller
        pass


async def _main(pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    tasks: list[asyncio.Task[None]] = []
    sockets: list[ClientConnection] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    while True:
        cmd: tuple[Any, ...] = await loop.run_in_executor(None, pipe.recv)
        op = cmd[0]
        if op == "connect":
            _, kind, base, origin, secret, pairs = cmd
            before_ok, before_failed = stats.connected, stats.failed
            batch = [
                asyncio.create_task(_hold(kind, base, origin, u, s, secret, stats, gate, sockets))
                for u, s in pairs
            ]
            tasks.extend(batch)
            while stats.connected + stats.failed - before_ok - before_failed < len(pairs):
                await stats.progress.wait()
                stats.progress.clear()
            pipe.send(
                (
                    "connected",
                    stats.connected - before_ok,
                    stats.failed - before_failed,
                    stats.errors[:3],
                )
            )
        elif op == "reset":
            stats.latencies, stats.received, stats.last_rx = [], 0, 0.0
            stats.arrivals = []
            # The clients are the instrument: keep their garbage collector from scanning
            # 5,000 connections' objects in the middle of a measurement (for every server).
            gc.collect()
            gc.freeze()
            pipe.send(("ok",))
        elif op == "arrivals":
            pipe.send(("arrivals", stats.arrivals))
        elif op == "stats":
            pipe.send(("stats", stats.latencies, stats.received, stats.last_rx))
        elif op == "alive":
            pipe.send(("alive", sum(1 for s in sockets if s.close_code is None)))
        elif op == "mark_pings":
            stats.pings_marked = list(stats.pings)
            pipe.send(("ok",))
        elif op == "pings":
            # Fewest pings any open connection got since mark_pings, and the total.
            since = [
                n - (stats.pings_marked[i] if i < len(stats.pings_marked) else 0)
                for i, n in enumerate(stats.pings)
                if sockets[i].close_code is None
            ]
            pipe.send(("pings", min(since, default=0), sum(since), len(since)))
        elif op == "close":
            for ws in sockets:
                ws.transport.abort()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send(("closed",))
            return


def worker_main(pipe: Connection) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(_main(pipe))
