"""Benchmark of the Avisos WebSocket gateway against the usual alternatives.

    uv run python bench/gateway/run.py            # 10,000 connections (a few minutes)
    uv run python bench/gateway/run.py --quick    # 2,000 connections, short phases

Measured in one run, on real PostgreSQL, Redis and RabbitMQ (a fresh database, vhost and
Redis prefix, dropped at the end):

* memory per idle authenticated connection: server RSS growth / N, after a warm-up of
  ``WARMUP`` connections, for the gateway, a FastAPI/uvicorn endpoint keeping a dict of
  connections, python-socketio, and bare websockets;
* end-to-end latency from publish (``avisos.realtime``) to the socket, p50/p99, at 200 and
  1,000 notifications/s spread over all connected users;
* fan-out of one notification to every user (as the API announces it: NotificationsCreated
  messages of up to ``FANOUT_CHUNK_RECIPIENTS`` recipients each, every recipient its own
  id, seq and unread count) until the last socket has it, against bare websockets
  ``broadcast()`` of one identical message to the same number of clients.

Client connections are spread over several worker processes; soft fd limits are raised
to the hard limit. Results are printed as a table and written to bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import resource
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiormq
import httpx
import psutil  # type: ignore[import-untyped]
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(Path(__file__).parent))

from clients import worker_main  # type: ignore[import-not-found]  # noqa: E402

from avisos_common.messages import (  # noqa: E402
    FANOUT_CHUNK_RECIPIENTS,
    PRIORITIES,
    NotificationContent,
    NotificationCreated,
    NotificationPayload,
    NotificationsCreated,
    Recipient,
    UnreadCount,
)
from avisos_common.topology import EXCHANGE_REALTIME  # noqa: E402
from avisos_testkit.infra import Backing, drop_backing, free_port, make_backing  # noqa: E402

ORIGIN = "http://bench.avisos.test"
SECRET = "bench-ticket-secret-" + secrets.token_hex(16)
WARMUP = 200
UNREAD = UnreadCount(total=1, by_priority=dict.fromkeys(PRIORITIES, 0))


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


class Workers:
    def __init__(self, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    async def ask(self, i: int, *cmd: Any) -> Any:
        self.pipes[i].send(cmd)
        return await asyncio.get_running_loop().run_in_executor(None, self.pipes[i].recv)

    async def all(self, *cmd: Any) -> list[Any]:
        return list(await asyncio.gather(*(self.ask(i, *cmd) for i in range(len(self.pipes)))))

    async def connect(self, kind: str, base: str, pairs: list[tuple[str, str]]) -> int:
        shares = [pairs[i :: len(self.pipes)] for i in range(len(self.pipes))]
        answers = await asyncio.gather(
            *(
                self.ask(i, "connect", kind, base, ORIGIN, SECRET, share)
                for i, share in enumerate(shares)
            )
        )
        failed = sum(a[2] for a in answers)
        if failed:
            print(f"  ! {failed} connections failed: {answers[0][3]}", flush=True)
        return sum(a[1] for a in answers)

    async def stats(self) -> tuple[list[float], int, float]:
        lat: list[float] = []
        received, last = 0, 0.0
        for _, latencies, count, last_rx in await self.all("stats"):
            lat.extend(latencies)
            received += count
            last = max(last, last_rx)
        return lat, received, last

    async def close(self) -> None:
        await self.all("close")
        for p in self.procs:
            p.join(5)


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def settle_rss(pid: int, secs: float = 2.0) -> int:
    await asyncio.sleep(secs)
    return rss(pid)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def setup_users(backing: Backing, count: int) -> list[tuple[str, str]]:
    import asyncpg  # type: ignore[import-untyped]
    import redis.asyncio as aioredis

    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(backing.database_url)
    try:
        await conn.copy_records_to_table(
            "users",
            records=[
                (u, f"{u.hex}@bench.test", "Bench", "x", ["staff"], "es", "Europe/Madrid", True)
                for u in ids
            ],
            columns=[
                "id",
                "email",
                "display_name",
                "password_hash",
                "roles",
                "locale",
                "timezone",
                "is_active",
            ],
        )
    finally:
        await conn.close()
    red = aioredis.from_url(backing.redis_url)
    pairs = [(str(u), secrets.token_hex(32)) for u in ids]
    async with red.pipeline(transaction=False) as pipe:
        for user, sid in pairs:
            pipe.set(f"{backing.redis_prefix}session:{sid}", json.dumps({"user_id": user}), ex=3600)
        await pipe.execute()
    await red.aclose()
    return pairs


def start_gateway(backing: Backing, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(backing.env())
    env.update(
        {
            "AVISOS_GATEWAY_PORT": str(port),
            "AVISOS_GATEWAY_HOST": "127.0.0.1",
            "AVISOS_TICKET_SECRET": SECRET,
            "AVISOS_ALLOWED_ORIGINS": ORIGIN,
            "AVISOS_LOG_LEVEL": "WARNING",
        }
    )
    if os.environ.get("BENCH_GATEWAY_PROFILE"):  # a path: write a CPU-time profile there
        script = str(Path(__file__).parent / "profile_gateway.py")
        return subprocess.Popen([sys.executable, script], env=env)
    return subprocess.Popen([sys.executable, "-m", "avisos_gateway"], env=env)


def start_baseline(kind: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "servers.py"), kind, str(port)]
    )


async def send_latency_buckets(port: int) -> dict[float, float]:
    """The gateway's own histogram of bus-message-to-socket-write latency (cumulative)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("avisos_gateway_send_latency_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


async def gc_counts(port: int) -> dict[str, float]:
    """Collections and total pause seconds by generation, from the gateway's /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(
            ("avisos_gateway_gc_pause_seconds_count", "avisos_gateway_gc_pause_seconds_sum")
        ):
            name, value = line.rsplit(" ", 1)
            out[name.removeprefix("avisos_gateway_gc_pause_seconds_")] = float(value)
    return out


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of what was observed in between."""
    diffs = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = diffs[-1][1] if diffs else 0.0
    for le, count in diffs:
        if total and count >= q * total:
            return le
    return float("nan")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit (uvicorn drains 10,000 sockets slowly)."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Feed:
    """Publishes NotificationCreated messages as the API would, seq contiguous per user.

    Published without publisher confirms: the realtime fanout is at-most-once anyway, and
    waiting for confirms would make this process, not the gateway, the bottleneck."""

    def __init__(self, channel: Any, users: list[str]) -> None:
        self.channel = channel  # an aiormq channel without publisher confirms
        self.users = [uuid.UUID(u) for u in users]
        self.seq: dict[uuid.UUID, int] = dict.fromkeys(self.users, 0)
        self.next = 0

    def body(self, user: uuid.UUID) -> bytes:
        self.seq[user] += 1
        now = dt.datetime.now(dt.UTC)
        payload = NotificationPayload(
            id=uuid.uuid4(),
            seq=self.seq[user],
            recipient_id=user,
            type="stock.low",
            category="inventory",
            subject="Stock bajo: SKU-123 en Tienda 7",
            message="Quedan 3 unidades (mínimo 10).",
            priority="normal",
            data={"t0": time.time(), "sku": "SKU-123", "store": "T7"},
            created_at=now,
        )
        message = NotificationCreated(user_id=user, notification=payload, unread=UNREAD)
        return message.model_dump_json().encode()

    def fanout_bodies(self) -> list[bytes]:
        """One notification to every user, chunked exactly as the API chunks it."""
        content = NotificationContent(
            type="stock.low",
            category="inventory",
            subject="Recuento de inventario: Tienda 7 cierra a las 20:00",
            message="Todo el personal: recuento general mañana a las 7:00.",
            priority="high",
            data={"t0": time.time(), "store": "T7"},
            created_at=dt.datetime.now(dt.UTC),
        )
        bodies = []
        for start in range(0, len(self.users), FANOUT_CHUNK_RECIPIENTS):
            recipients = []
            for user in self.users[start : start + FANOUT_CHUNK_RECIPIENTS]:
                self.seq[user] += 1
                recipients.append(
                    Recipient(
                        user_id=user,
                        notification_id=uuid.uuid4(),
                        seq=self.seq[user],
                        unread=UNREAD,
                    )
                )
            message = NotificationsCreated(notification=content, recipients=recipients)
            bodies.append(message.model_dump_json().encode())
        return bodies

    async def send(self, body: bytes) -> None:
        await self.channel.basic_publish(
            body,
            exchange=EXCHANGE_REALTIME,
            routing_key="",
            properties=aiormq.spec.Basic.Properties(content_type="application/json"),
        )

    async def rate(self, per_sec: int, secs: float) -> int:
        """Publish ``per_sec`` messages a second, round-robin over the users, for ``secs``."""
        tick = 0.01
        per_tick = max(1, round(per_sec * tick))
        sent = 0
        start = time.monotonic()
        for k in range(int(secs / tick)):
            for _ in range(per_tick):
                user = self.users[self.next % len(self.users)]
                self.next += 1
                await self.send(self.body(user))
                sent += 1
            delay = start + (k + 1) * tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return sent


async def wait_received(
    workers: Workers, expected: int, timeout: float
) -> tuple[list[float], int, float]:
    deadline = time.monotonic() + timeout
    while True:
        lat, received, last = await workers.stats()
        if received >= expected or time.monotonic() > deadline:
            return lat, received, last
        await asyncio.sleep(0.2)


async def measure_memory(
    kind: str, pid: int, workers: Workers, base: str, pairs: list[tuple[str, str]], n: int
) -> dict[str, Any]:
    warm = await workers.connect(kind, base, pairs[:WARMUP])
    rss0 = await settle_rss(pid)
    t = time.monotonic()
    ok = await workers.connect(kind, base, pairs[WARMUP : WARMUP + n])
    connect_secs = time.monotonic() - t
    rss1 = await settle_rss(pid, 3.0)
    per = (rss1 - rss0) / max(1, ok)
    print(
        f"  {kind}: {ok}/{n} connected (+{warm} warm-up) in {connect_secs:.1f}s, "
        f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB, {kib(per)}/connection",
        flush=True,
    )
    return {
        "connected": ok,
        "rss_before": rss0,
        "rss_after": rss1,
        "bytes_per_conn": per,
        "connect_secs": connect_secs,
    }


async def bench_gateway(
    backing: Backing,
    pairs: list[tuple[str, str]],
    n: int,
    nworkers: int,
    phase_secs: float,
    memory_only: bool = False,
) -> dict[str, Any]:
    port = free_port()
    proc = start_gateway(backing, port)
    out: dict[str, Any] = {}
    workers = Workers(nworkers)
    amqp = await aiormq.connect(backing.amqp_url)
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        out["memory"] = await measure_memory(
            "avisos", proc.pid, workers, f"ws://127.0.0.1:{port}/ws", pairs, n
        )
        if memory_only:
            return out
        out["gc_after_connect"] = await gc_counts(port)
        channel = await amqp.channel(publisher_confirms=False)
        feed = Feed(channel, [u for u, _ in pairs[WARMUP : WARMUP + n]])
        gw_proc = psutil.Process(proc.pid)
        for per_sec in (200, 1000):
            await workers.all("reset")
            t_user0, t_sys0 = gw_proc.cpu_times()[:2]
            hist0 = await send_latency_buckets(port)
            sent = await feed.rate(per_sec, phase_secs)
            lat, received, _ = await wait_received(workers, sent, 10)
            hist1 = await send_latency_buckets(port)
            out[f"gc_after_{per_sec}"] = await gc_counts(port)
            t_user1, t_sys1 = gw_proc.cpu_times()[:2]
            cpu = (t_user1 - t_user0) + (t_sys1 - t_sys0)
            print(f"  gateway CPU user {t_user1 - t_user0:.2f}s sys {t_sys1 - t_sys0:.2f}s")
            out[f"latency_{per_sec}"] = {
                "sent": sent,
                "received": received,
                "p50_ms": pct(lat, 0.5) * 1000,
                "p99_ms": pct(lat, 0.99) * 1000,
                "max_ms": max(lat, default=0) * 1000,
                "gateway_cpu_us_per_msg": cpu / max(1, sent) * 1e6,
                # The gateway's side alone (bus message produced -> written to the socket),
                # as bucket upper bounds: without the clients' own scheduling delays.
                "gateway_p50_le_ms": bucket_quantile(hist0, hist1, 0.5) * 1000,
                "gateway_p99_le_ms": bucket_quantile(hist0, hist1, 0.99) * 1000,
            }
            print(
                f"  avisos @ {per_sec}/s: {received}/{sent} received, p50 "
                f"{pct(lat, 0.5) * 1000:.1f} ms, p99 {pct(lat, 0.99) * 1000:.1f} ms, gateway "
                f"CPU {cpu / max(1, sent) * 1e6:.0f} us/msg",
                flush=True,
            )
        await workers.all("reset")
        bodies = feed.fanout_bodies()  # built before the clock starts
        t0 = time.time()
        for body in bodies:
            await feed.send(body)
        published = time.time() - t0
        lat, received, last = await wait_received(workers, len(feed.users), 60)
        out["fanout"] = {
            "users": len(feed.users),
            "received": received,
            "secs": last - t0,
            "publish_secs": published,
            "messages": len(bodies),
        }
        print(
            f"  avisos fan-out to {len(feed.users)}: {received} received, last after "
            f"{last - t0:.3f}s (publishing took {published:.3f}s)",
            flush=True,
        )
        out["gc_after_all"] = await gc_counts(port)
        alive = sum(a[1] for a in await workers.all("alive"))
        out["alive_at_end"] = alive
    finally:
        await workers.close()
        await amqp.close()
        stop_process(proc)
    return out


async def bench_baseline(
    kind: str, pairs: list[tuple[str, str]], n: int, nworkers: int, fanout: bool
) -> dict[str, Any]:
    port = free_port()
    proc = start_baseline(kind, port)
    workers = Workers(nworkers)
    out: dict[str, Any] = {}
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        path = "" if kind == "socketio" else "/ws"
        client_kind = "socketio" if kind == "socketio" else "plain"
        out["memory"] = await measure_memory(
            client_kind, proc.pid, workers, f"ws://127.0.0.1:{port}{path}", pairs, n
        )
        if fanout:
            await workers.all("reset")
            async with connect(f"ws://127.0.0.1:{port}/ws?user=control") as control:
                await control.send("broadcast")
                lat, received, last = await wait_received(workers, WARMUP + n, 60)
            t0 = last - max(lat) if lat else 0.0
            out["fanout"] = {"users": WARMUP + n, "received": received, "secs": max(lat)}
            print(
                f"  {kind} broadcast to {WARMUP + n}: {received} received, last after "
                f"{max(lat):.3f}s",
                flush=True,
            )
            del t0
    finally:
        await workers.close()
        stop_process(proc)
    return out


def table(results: dict[str, Any], n: int) -> str:
    gw = results["avisos"]
    lines = [
        f"Gateway benchmark: {n:,} connections, {os.cpu_count()} CPUs shared with the "
        f"clients, broker and databases, load average {results.get('load', '?')}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| server | memory / idle connection | fan-out to all (last socket) |",
        "|---|---|---|",
    ]
    names = {
        "avisos": "Avisos gateway (authenticated, resumable)",
        "bare": "bare websockets 17 (no auth, broadcast())",
        "fastapi": "FastAPI/uvicorn dict of connections",
        "socketio": "python-socketio 5 (ASGI/uvicorn)",
    }
    for key in ("avisos", "bare", "fastapi", "socketio"):
        if key not in results:
            continue
        r = results[key]
        fan = r.get("fanout")
        fan_s = (
            f"{fan['secs'] * 1000:.0f} ms ({fan['received']:,}/{fan['users']:,})" if fan else "-"
        )
        lines.append(f"| {names[key]} | {kib(r['memory']['bytes_per_conn'])} | {fan_s} |")
    lines += [
        "",
        "| Avisos latency publish -> client | p50 | p99 | max | delivered | gateway-side p50 / p99"
        " (histogram bucket) | gateway CPU/msg |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate in (200, 1000):
        r = gw[f"latency_{rate}"]
        lines.append(
            f"| {rate:,} notifications/s over {n:,} users | {r['p50_ms']:.1f} ms | "
            f"{r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms | "
            f"{r['received']:,}/{r['sent']:,} | ≤ {r['gateway_p50_le_ms']:g} ms / "
            f"≤ {r['gateway_p99_le_ms']:g} ms | {r['gateway_cpu_us_per_msg']:.0f} µs |"
        )
    if "bare" in results and results["bare"].get("fanout"):
        ratio = gw["fanout"]["secs"] / results["bare"]["fanout"]["secs"]
        lines += [
            "",
            f"Fan-out ratio Avisos / bare broadcast(): {ratio:.2f}x "
            f"(Avisos includes publishing {gw['fanout']['messages']:,} bus messages: "
            f"{gw['fanout']['publish_secs'] * 1000:.0f} ms)",
        ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 connections, short phases")
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--memory-only", action="store_true", help="skip latency and fan-out")
    parser.add_argument(
        "--only", choices=["avisos", "bare", "fastapi", "socketio"], action="append"
    )
    args = parser.parse_args()
    n = args.connections or (2000 if args.quick else 10_000)
    phase_secs = 3.0 if args.quick else 10.0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kinds = args.only or ["avisos", "bare", "fastapi", "socketio"]
    print(f"gateway bench: {n} connections over {args.workers} client processes", flush=True)
    backing = await make_backing("bench")
    results: dict[str, Any] = {}
    try:
        pairs = await setup_users(backing, WARMUP + n)
        if "avisos" in kinds:
            results["avisos"] = await bench_gateway(
                backing, pairs, n, args.workers, phase_secs, args.memory_only
            )
        for kind in ("bare", "fastapi", "socketio"):
            if kind in kinds:
                results[kind] = await bench_baseline(
                    kind, pairs, n, args.workers, fanout=kind == "bare" and not args.memory_only
                )
    finally:
        await drop_backing(backing)
    results["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    if "avisos" in results and not args.memory_only:
        print()
        print(table(results, n))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())
