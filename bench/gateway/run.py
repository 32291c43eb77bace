"""Benchmark of the Avisos WebSocket gateway against the usual alternatives.

    uv run python bench/gateway/run.py            # 10,000 connections (5-6 min, more under load)
    uv run python bench/gateway/run.py --quick    # 2,000 connections, short phases,
                                                  # max-connections mode capped at 4,000
    uv run python bench/gateway/run.py --only max # only the max-connections mode

Measured in one run, on real PostgreSQL, Redis and RabbitMQ (a fresh database, vhost and
Redis prefix, dropped at the end):

* memory per idle authenticated connection: server RSS growth / N, after a warm-up of
  ``WARMUP`` connections, for the gateway, a FastAPI/uvicorn endpoint keeping a dict of
  connections, python-socketio, and bare websockets;
* end-to-end latency from publish (``avisos.realtime``) to the socket, p50/p99, at 200 and
  1,000 notifications/s spread over all connected users;
* the same from the commit to PostgreSQL to the socket: notifications committed as the API
  commits them (notification row, outbox row, ``NOTIFY avisos_outbox``; see
  outbox_writer.py) and published by the outbox relay of a real notification-api process
  (``python -m avisos_api``), at 200 and 1,000/s;
* fan-out of one notification to every user (as the API announces it: NotificationsCreated
  messages of up to ``FANOUT_CHUNK_RECIPIENTS`` recipients each, every recipient its own
  id, seq and unread count) until the last socket has it, against bare websockets
  ``broadcast()`` of one identical message to the same number of clients;
* connections one gateway process holds: as many authenticated connections as the
  open-file limit allows (less the gateway's own descriptors and ``FD_HEADROOM``), kept
  open through several keep-alive rounds (ping interval shortened for this phase), all
  checked alive; RSS growth per connection, extrapolated to connections per GiB and to
  100,000 connections (``--only max``; ``--max-connections N`` to cap it).

Client connections are spread over several worker processes; soft fd limits are raised
to the hard limit. Every latency and fan-out phase also records how busy the machine was
and the cores each of our processes used (the machine is shared: read tails with that).
Results are printed as a table and written to bench/results/gateway.json.
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
from collections.abc import Awaitable, Callable
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
from outbox_writer import CommitFeed, open_pool  # type: ignore[import-not-found]  # noqa: E402

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
INTERNAL_TOKEN = "bench-internal-token-" + secrets.token_hex(16)
WARMUP = 200
#: Descriptors left free in the max-connections phase for what the gateway opens later
#: (database pool up to 10, Redis pool up to 32, /metrics scrapes, an AMQP reconnect).
FD_HEADROOM = 100
#: Keep-alive in the max-connections phase: every connection is pinged this often, and
#: one that answers nothing for IDLE_TIMEOUT_SECS is closed by the gateway.
MAX_PING_INTERVAL_SECS = 5.0
MAX_IDLE_TIMEOUT_SECS = 20.0
#: Ping rounds every connection must have answered before it counts as held.
MAX_PING_ROUNDS = 3
#: Client processes of the max-connections phase (a share of the sockets each).
MAX_WORKERS = 4
#: Connections per GiB the issue asks for.
TARGET_CONNS_PER_GIB = 100_000
#: --quick caps the max-connections mode (a smoke run, not the machine's maximum).
QUICK_MAX_CONNECTIONS = 4_000
UNREAD = UnreadCount(total=1, by_priority=dict.fromkeys(PRIORITIES, 0))


def load_now() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


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

    async def arrivals(self) -> list[tuple[float, float]]:
        """(t0, arrival) of every notification the clients got since the last reset."""
        out: list[tuple[float, float]] = []
        for _, pairs in await self.all("arrivals"):
            out.extend(pairs)
        return out

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self.procs if p.pid is not None]

    async def close(self) -> None:
        await self.all("close")
        for p in self.procs:
            p.join(5)


class CpuMeter:
    """CPU used from construction to :meth:`read`: how busy the whole machine was, and
    how many cores each named group of processes used (the rest is PostgreSQL, RabbitMQ,
    Redis and whatever else runs on the machine, e.g. other people's tests)."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups
        self.wall0 = time.monotonic()
        self.machine0 = psutil.cpu_times()
        self.cpu0 = {name: self._cpu(procs) for name, procs in groups.items()}

    @staticmethod
    def _cpu(procs: list[psutil.Process]) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall0
        m0, m1 = self.machine0, psutil.cpu_times()
        total = sum(m1) - sum(m0)
        idle = (m1.idle - m0.idle) + (m1.iowait - m0.iowait)
        out = {"machine_busy": 1 - idle / total if total else float("nan"), "wall_secs": wall}
        ours = 0.0
        for name, procs in self.groups.items():
            secs = self._cpu(procs) - self.cpu0[name]
            out[f"{name}_cpu_secs"] = secs
            out[f"{name}_cores"] = secs / wall
            ours += secs / wall
        out["rest_cores"] = out["machine_busy"] * (os.cpu_count() or 1) - ours
        return out

    def describe(self, used: dict[str, float]) -> str:
        parts = [f"{name} {used[f'{name}_cores']:.2f}" for name in self.groups]
        return (
            f"machine CPU busy {used['machine_busy']:.0%} of {os.cpu_count()} cores; cores used:"
            f" {', '.join(parts)}, rest (databases, broker, others) {used['rest_cores']:.2f}"
        )


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


def start_gateway(
    backing: Backing, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(backing.env())
    env.update(
        {
            "AVISOS_GATEWAY_PORT": str(port),
            "AVISOS_GATEWAY_HOST": "127.0.0.1",
            "AVISOS_TICKET_SECRET": SECRET,
            "AVISOS_ALLOWED_ORIGINS": ORIGIN,
            "AVISOS_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
    )
    if os.environ.get("BENCH_GATEWAY_PROFILE"):  # a path: write a CPU-time profile there
        script = str(Path(__file__).parents[1] / "cpu_profile.py")
        return subprocess.Popen(
            [sys.executable, script, "avisos_gateway", os.environ["BENCH_GATEWAY_PROFILE"]],
            env=env,
        )
    return subprocess.Popen([sys.executable, "-m", "avisos_gateway"], env=env)


def start_api(backing: Backing, port: int) -> subprocess.Popen[bytes]:
    """A real notification-api process (``python -m avisos_api``): serves the API and runs
    the outbox relay (``AVISOS_RUN_RELAY`` defaults to on), with the settings it has in
    production but for the secrets, which are set as the e2e stack sets them."""
    env = dict(os.environ)
    env.update(backing.env())
    env.update(
        {
            "AVISOS_API_HOST": "127.0.0.1",
            "AVISOS_API_PORT": str(port),
            "AVISOS_TICKET_SECRET": SECRET,
            "AVISOS_INTERNAL_TOKEN": INTERNAL_TOKEN,
            "AVISOS_LOG_LEVEL": "WARNING",
        }
    )
    return subprocess.Popen([sys.executable, "-m", "avisos_api"], env=env)


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


async def latency_phase(
    label: str,
    per_sec: int,
    workers: Workers,
    port: int,
    gw_proc: psutil.Process,
    produce: Callable[[], Awaitable[tuple[int, float]]],
    api_proc: psutil.Process | None,
) -> dict[str, Any]:
    """Run ``produce`` (which sends notifications at ``per_sec`` and returns how many it
    sent and the seconds it took), wait for the clients to have them, and measure."""
    await workers.all("reset")
    procs = {"gateway": [gw_proc], "bench": [psutil.Process()], "clients": workers.processes()}
    if api_proc is not None:
        procs["api"] = [api_proc]
    meter = CpuMeter(procs)
    hist0 = await send_latency_buckets(port)
    sent, secs = await produce()
    lat, received, _ = await wait_received(workers, sent, 30)
    hist1 = await send_latency_buckets(port)
    used = meter.read()
    cpu = used["gateway_cpu_secs"]
    result: dict[str, Any] = {
        "sent": sent,
        "received": received,
        "achieved_per_sec": sent / secs if secs else float("nan"),
        "p50_ms": pct(lat, 0.5) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": max(lat, default=0) * 1000,
        "gateway_cpu_us_per_msg": cpu / max(1, sent) * 1e6,
        # The gateway's side alone (bus message produced -> written to the socket), as
        # bucket upper bounds: without the clients' own scheduling delays. For commits the
        # message is produced just before the commit, so this includes outbox and relay.
        "gateway_p50_le_ms": bucket_quantile(hist0, hist1, 0.5) * 1000,
        "gateway_p99_le_ms": bucket_quantile(hist0, hist1, 0.99) * 1000,
    }
    result["cpu"] = used
    extra = ""
    if api_proc is not None:
        result["api_cpu_us_per_msg"] = used["api_cpu_secs"] / max(1, sent) * 1e6
        extra = f", API (relay) CPU {result['api_cpu_us_per_msg']:.0f} us/msg"
    print(
        f"  avisos {label} @ {per_sec}/s (achieved {result['achieved_per_sec']:.0f}/s): "
        f"{received}/{sent} received, p50 {result['p50_ms']:.1f} ms, p99 "
        f"{result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms, gateway CPU "
        f"{result['gateway_cpu_us_per_msg']:.0f} us/msg{extra}\n    {meter.describe(used)}",
        flush=True,
    )
    return result


async def commit_phases(
    backing: Backing,
    feed: Feed,
    workers: Workers,
    port: int,
    gw_proc: psutil.Process,
    phase_secs: float,
) -> dict[str, Any]:
    """Commit -> socket at 200 and 1,000/s through a real API process's outbox relay."""
    out: dict[str, Any] = {}
    api_port = free_port()
    api = start_api(backing, api_port)
    pool = await open_pool(backing.database_url)
    try:
        await wait_http(f"http://127.0.0.1:{api_port}/readyz", timeout=60)
        writer = CommitFeed(pool, feed.users, feed.seq)
        writer.next = feed.next
        # The publish phases announced seqs without rows: continue after them.
        await writer.sync_seqs()
        probe_secs = await writer.probe(feed.users[0])
        print(f"  notification-api up, its relay published a probe in {probe_secs:.2f}s")
        api_proc = psutil.Process(api.pid)
        pending_at_stop: dict[int, int] = {}
        for per_sec in (200, 1000):
            after = await writer.max_outbox_id()
            writer.writer_stats()  # drop the probe's and earlier timings

            async def commit(rate: int = per_sec, after: int = after) -> tuple[int, float]:
                sent, secs = await writer.rate(rate, phase_secs)
                # What the relay still had to publish when the writer stopped.
                pending_at_stop[rate] = await writer.pending(after)
                return sent, secs

            result = await latency_phase(
                "commit -> socket", per_sec, workers, port, gw_proc, commit, api_proc
            )
            # From the commit: the writer knows when each tick's commit returned (t0 is
            # stamped before its inserts). Its return is observed a little after PostgreSQL
            # committed, so this is a lower bound and the stamp-based figure an upper one.
            from_commit = [
                arrival - writer.committed_at[t0]
                for t0, arrival in await workers.arrivals()
                if t0 in writer.committed_at
            ]
            result["stamp_p50_ms"], result["stamp_p99_ms"] = result["p50_ms"], result["p99_ms"]
            result["stamp_max_ms"] = result["max_ms"]
            result["p50_ms"] = pct(from_commit, 0.5) * 1000
            result["p99_ms"] = pct(from_commit, 0.99) * 1000
            result["max_ms"] = max(from_commit, default=0) * 1000
            result["from_commit_samples"] = len(from_commit)
            print(
                f"    from the commit returning: p50 {result['p50_ms']:.1f} ms, p99 "
                f"{result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms "
                f"({len(from_commit)} samples)",
                flush=True,
            )
            result["pending_when_writer_stopped"] = pending_at_stop[per_sec]
            result.update(writer.writer_stats())
            result.update(await writer.relay_stats(after))
            print(
                f"    writer tx p50/p99 {result['writer_tx_p50_ms']:.1f}/"
                f"{result['writer_tx_p99_ms']:.1f} ms; outbox wait (writer tx start -> relay "
                f"claim) p50/p99 {result['outbox_wait_p50_ms']:.1f}/"
                f"{result['outbox_wait_p99_ms']:.1f} ms; {result['relay_passes']} relay passes,"
                f" {result['rows_per_pass']:.1f} rows/pass; "
                f"{result['pending_when_writer_stopped']} rows pending at writer stop",
                flush=True,
            )
            out[f"commit_latency_{per_sec}"] = result
        feed.next = writer.next
    finally:
        await pool.close()
        stop_process(api)
    return out


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

            async def publish(rate: int = per_sec) -> tuple[int, float]:
                started = time.monotonic()
                return await feed.rate(rate, phase_secs), time.monotonic() - started

            out[f"latency_{per_sec}"] = await latency_phase(
                "publish -> socket", per_sec, workers, port, gw_proc, publish, None
            )
            out[f"gc_after_{per_sec}"] = await gc_counts(port)
        out.update(await commit_phases(backing, feed, workers, port, gw_proc, phase_secs))
        await workers.all("reset")
        bodies = feed.fanout_bodies()  # built before the clock starts
        meter = CpuMeter({"gateway": [gw_proc], "clients": workers.processes()})
        t0 = time.time()
        for body in bodies:
            await feed.send(body)
        published = time.time() - t0
        _lat, received, last = await wait_received(workers, len(feed.users), 60)
        used = meter.read()
        out["fanout"] = {
            "users": len(feed.users),
            "received": received,
            "secs": last - t0,
            "publish_secs": published,
            "messages": len(bodies),
            # CPU until the controller saw the last copy (the gateway is idle after it).
            "server_cpu_secs": used["gateway_cpu_secs"],
            "clients_cpu_secs": used["clients_cpu_secs"],
            "cpu": used,
        }
        print(
            f"  avisos fan-out to {len(feed.users)}: {received} received, last after "
            f"{last - t0:.3f}s (publishing took {published:.3f}s); gateway CPU "
            f"{used['gateway_cpu_secs']:.2f}s, clients {used['clients_cpu_secs']:.2f}s\n"
            f"    {meter.describe(used)}",
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


async def metric_values(port: int, name: str) -> dict[str, float]:
    """Samples of metric ``name`` on the gateway's /metrics, by label string ("" if none)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name) :].strip("{}")] = float(value)
    return out


async def bench_max_connections(
    backing: Backing, pairs: list[tuple[str, str]], cap: int | None
) -> dict[str, Any]:
    """As many authenticated connections as one gateway's open-file limit allows, held
    through ``MAX_PING_ROUNDS`` keep-alive rounds; RSS growth per connection."""
    port = free_port()
    proc = start_gateway(
        backing,
        port,
        {
            "AVISOS_PING_INTERVAL_SECS": str(MAX_PING_INTERVAL_SECS),
            "AVISOS_IDLE_TIMEOUT_SECS": str(MAX_IDLE_TIMEOUT_SECS),
        },
    )
    workers = Workers(MAX_WORKERS)
    base = f"ws://127.0.0.1:{port}/ws"
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        gw = psutil.Process(proc.pid)
        fd_soft, fd_hard = gw.rlimit(psutil.RLIMIT_NOFILE)
        own_fds = gw.num_fds()
        by_limit = fd_soft - own_fds - FD_HEADROOM
        target = min(by_limit, cap or by_limit, len(pairs))
        print(
            f"  max connections: gateway fd limit {fd_soft:,} (hard {fd_hard:,}), "
            f"{own_fds} in use at start, {FD_HEADROOM} kept free -> {target:,} connections "
            f"over {MAX_WORKERS} client processes; ping every {MAX_PING_INTERVAL_SECS:g}s, "
            f"idle timeout {MAX_IDLE_TIMEOUT_SECS:g}s",
            flush=True,
        )
        warm = await workers.connect("avisos", base, pairs[:WARMUP])
        rss0 = await settle_rss(proc.pid)
        started = time.monotonic()
        meter = CpuMeter({"gateway": [gw], "clients": workers.processes()})
        ok = await workers.connect("avisos", base, pairs[WARMUP:target])
        connect_secs = time.monotonic() - started
        connect_cpu = meter.read()
        rss1 = await settle_rss(proc.pid, 3.0)
        held = warm + ok
        print(
            f"  max connections: {held:,}/{target:,} connected in {connect_secs:.0f}s, "
            f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB\n    {meter.describe(connect_cpu)}",
            flush=True,
        )
        # Keep-alive: every open connection must answer MAX_PING_ROUNDS pings from now.
        await workers.all("mark_pings")
        cpu0 = sum(gw.cpu_times()[:2])
        hold_started = time.monotonic()
        deadline = hold_started + 4 * MAX_PING_ROUNDS * MAX_PING_INTERVAL_SECS
        fewest = 0
        while time.monotonic() < deadline:
            answers = await workers.all("pings")
            fewest = min(a[1] for a in answers)
            if fewest >= MAX_PING_ROUNDS:
                break
            await asyncio.sleep(1.0)
        hold_secs = time.monotonic() - hold_started
        hold_cpu = sum(gw.cpu_times()[:2]) - cpu0
        pings = sum(a[2] for a in answers)
        rss2 = rss(proc.pid)
        fds = gw.num_fds()
        alive = sum(a[1] for a in await workers.all("alive"))
        gauge = (await metric_values(port, "avisos_gateway_connections")).get("", float("nan"))
        drops = await metric_values(port, "avisos_gateway_drops_total")
        # Conservative: the larger of the RSS after connecting and after the ping rounds.
        per = (max(rss1, rss2) - rss0) / max(1, ok)
        result = {
            "fd_limit": fd_soft,
            "gateway_fds_at_start": own_fds,
            "target": target,
            "connected": held,
            "failed": target - held,
            "connect_secs": connect_secs,
            "connect_cpu": connect_cpu,
            "rss_before": rss0,
            "rss_after_connect": rss1,
            "rss_after_pings": rss2,
            "bytes_per_conn": per,
            "conns_per_gib": 2**30 / per if per > 0 else float("inf"),
            "rss_at_100k_bytes": rss0 + TARGET_CONNS_PER_GIB * per,
            "ping_interval_secs": MAX_PING_INTERVAL_SECS,
            "idle_timeout_secs": MAX_IDLE_TIMEOUT_SECS,
            "ping_rounds_min": fewest,
            "pings_answered": pings,
            "hold_secs": hold_secs,
            "gateway_cpu_share_while_pinging": hold_cpu / hold_secs if hold_secs else 0.0,
            "alive_after_pings": alive,
            "gateway_connections_gauge": gauge,
            "gateway_fds_after_pings": fds,
            "gateway_drops": drops,
        }
        result["all_alive"] = (
            alive == held == gauge and fewest >= MAX_PING_ROUNDS and not any(drops.values())
        )
        print(
            f"  max connections: {alive:,} alive (gateway gauge {gauge:,.0f}, {fds:,} fds) after"
            f" >= {fewest} ping rounds each ({pings:,} pongs in {hold_secs:.0f}s, gateway CPU "
            f"{result['gateway_cpu_share_while_pinging']:.0%}); RSS {rss0 / 2**20:.0f} -> "
            f"{rss1 / 2**20:.0f} -> {rss2 / 2**20:.0f} MiB: {kib(per)}/connection, "
            f"{result['conns_per_gib']:,.0f} connections per GiB; drops {drops or 'none'}",
            flush=True,
        )
        return result
    finally:
        await workers.close()
        stop_process(proc)


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
            meter = CpuMeter({"server": [psutil.Process(proc.pid)], "clients": workers.processes()})
            async with connect(f"ws://127.0.0.1:{port}/ws?user=control") as control:
                await control.send("broadcast")
                lat, received, _last = await wait_received(workers, WARMUP + n, 60)
            used = meter.read()
            out["fanout"] = {
                "users": WARMUP + n,
                "received": received,
                "secs": max(lat),
                "server_cpu_secs": used["server_cpu_secs"],
                "clients_cpu_secs": used["clients_cpu_secs"],
                "cpu": used,
            }
            print(
                f"  {kind} broadcast to {WARMUP + n}: {received} received, last after "
                f"{max(lat):.3f}s; server CPU {used['server_cpu_secs']:.2f}s, clients "
                f"{used['clients_cpu_secs']:.2f}s\n    {meter.describe(used)}",
                flush=True,
            )
    finally:
        await workers.close()
        stop_process(proc)
    return out


def table(results: dict[str, Any], n: int) -> str:
    gw = results.get("avisos", {})
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
    if "latency_200" in gw:
        lines += latency_table(gw, n)
    if "max" in results:
        lines += max_table(results)
    if "bare" in results and results["bare"].get("fanout") and "fanout" in gw:
        ours, bare = gw["fanout"], results["bare"]["fanout"]
        ratio = ours["secs"] / bare["secs"]
        lines += [
            "",
            f"Fan-out ratio Avisos / bare broadcast(): {ratio:.2f}x, target 1.5x "
            f"(Avisos includes publishing {ours['messages']:,} bus messages: "
            f"{ours['publish_secs'] * 1000:.0f} ms). Server CPU for it: gateway "
            f"{ours['server_cpu_secs']:.2f}s, bare {bare['server_cpu_secs']:.2f}s; "
            f"the clients' CPU: {ours['clients_cpu_secs']:.2f}s / "
            f"{bare['clients_cpu_secs']:.2f}s.",
        ]
    return "\n".join(lines)


def latency_table(gw: dict[str, Any], n: int) -> list[str]:
    lines = [
        "",
        "| Avisos latency -> client, over "
        f"{n:,} users | p50 | p99 | max | delivered | gateway-side p50 / p99"
        " (histogram bucket) | gateway CPU/msg | machine CPU busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [("publish -> socket", "latency")]
    if "commit_latency_200" in gw:
        rows.append(("commit -> socket", "commit_latency"))
    for label, key in rows:
        for rate in (200, 1000):
            r = gw[f"{key}_{rate}"]
            target = " (target < 50 ms)" if rate == 1000 and key == "commit_latency" else ""
            lines.append(
                f"| {label}, {rate:,}/s | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms{target} | "
                f"{r['max_ms']:.1f} ms | {r['received']:,}/{r['sent']:,} | "
                f"≤ {r['gateway_p50_le_ms']:g} ms / ≤ {r['gateway_p99_le_ms']:g} ms | "
                f"{r['gateway_cpu_us_per_msg']:.0f} µs | {r['cpu']['machine_busy']:.0%} |"
            )
    if "commit_latency_200" in gw:
        lines += [
            "",
            "| commit -> socket: the path before the gateway | writer rate achieved | "
            "stamp (before the inserts) -> socket p50 / p99 | "
            "stamp -> commit p50 / p99 | outbox wait p50 / p99 (writer tx start -> relay claim)"
            " | relay passes (rows/pass) | pending at writer stop | API process CPU/msg |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for rate in (200, 1000):
            r = gw[f"commit_latency_{rate}"]
            lines.append(
                f"| {rate:,}/s | {r['achieved_per_sec']:,.0f}/s | "
                f"{r['stamp_p50_ms']:.1f} / {r['stamp_p99_ms']:.1f} ms | "
                f"{r['stamp_to_commit_p50_ms']:.1f} / {r['stamp_to_commit_p99_ms']:.1f} ms | "
                f"{r['outbox_wait_p50_ms']:.1f} / {r['outbox_wait_p99_ms']:.1f} ms | "
                f"{r['relay_passes']:,} ({r['rows_per_pass']:.1f}) | "
                f"{r['pending_when_writer_stopped']} | {r['api_cpu_us_per_msg']:.0f} µs |"
            )
    return lines


def max_table(results: dict[str, Any]) -> list[str]:
    m = results["max"]
    at_n = results.get("avisos", {}).get("memory")
    lines = [
        "",
        f"| one gateway process, fd limit {m['fd_limit']:,} | connections held | alive after "
        f"pings (every {m['ping_interval_secs']:g} s) | RSS growth / connection | connections"
        " per GiB | RSS at 100,000 connections |",
        "|---|---|---|---|---|---|",
        f"| max connections | {m['connected']:,}/{m['target']:,} | {m['alive_after_pings']:,}"
        f" (≥ {m['ping_rounds_min']} rounds each{'' if m['all_alive'] else '; NOT all'}) | "
        f"{kib(m['bytes_per_conn'])} | {m['conns_per_gib']:,.0f} (target "
        f"{TARGET_CONNS_PER_GIB:,}) | {m['rss_at_100k_bytes'] / 2**30:.2f} GiB |",
    ]
    if at_n:
        per = at_n["bytes_per_conn"]
        lines.append(
            f"| same run, {at_n['connected']:,} idle connections | {at_n['connected']:,} | - | "
            f"{kib(per)} | {2**30 / per:,.0f} | "
            f"{(at_n['rss_before'] + TARGET_CONNS_PER_GIB * per) / 2**30:.2f} GiB |"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 connections, short phases")
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--memory-only", action="store_true", help="skip latency and fan-out")
    parser.add_argument(
        "--only",
        choices=["avisos", "max", "bare", "fastapi", "socketio"],
        action="append",
        help="run only these (max: the max-connections mode)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="cap the max-connections mode (default: the open-file limit allows)",
    )
    args = parser.parse_args()
    n = args.connections or (2000 if args.quick else 10_000)
    phase_secs = 3.0 if args.quick else 10.0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    max_cap = args.max_connections or (QUICK_MAX_CONNECTIONS if args.quick else None)
    kinds = args.only or ["avisos", "max", "bare", "fastapi", "socketio"]
    print(f"gateway bench: {n} connections over {args.workers} client processes", flush=True)
    backing = await make_backing("bench")
    results: dict[str, Any] = {}
    loads: dict[str, str] = {}
    try:
        # One user per connection, also in the max-connections mode (≤ the fd limit).
        users = max(WARMUP + n, min(hard, max_cap or hard) if "max" in kinds else 0)
        pairs = await setup_users(backing, users)
        if "avisos" in kinds:
            loads["avisos"] = load_now()
            results["avisos"] = await bench_gateway(
                backing, pairs[: WARMUP + n], n, args.workers, phase_secs, args.memory_only
            )
        if "max" in kinds:
            loads["max"] = load_now()
            results["max"] = await bench_max_connections(backing, pairs, max_cap)
        for kind in ("bare", "fastapi", "socketio"):
            if kind in kinds:
                loads[kind] = load_now()
                results[kind] = await bench_baseline(
                    kind,
                    pairs[: WARMUP + n],
                    n,
                    args.workers,
                    fanout=kind == "bare" and not args.memory_only,
                )
    finally:
        await drop_backing(backing)
    loads["end"] = load_now()
    results["load"] = load_now()
    results["load_at_phase_start"] = loads
    print(f"load average (1/5/15 min) at the start of each part: {loads}")
    if ("avisos" in results or "max" in results) and not args.memory_only:
        print()
        print(table(results, n))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())
