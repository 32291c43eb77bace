"""Dispatcher throughput: emails/s into a local SMTP sink and pushes/s into the local push
service, one dispatcher process, on this machine's real PostgreSQL/Redis/RabbitMQ.

    uv run --frozen python bench/dispatcher/run.py [--quick] [--emails N] [--pushes N]
        [--verify-push]

The queues are filled first, then one ``avisos-dispatcher`` process is started; the rate is
measured at the receiving side from the first to the last message received, and every
delivery is checked to be recorded as sent in PostgreSQL. By default the push service does
not decrypt (it would compete for the same cores as the dispatcher); ``--verify-push``
turns full VAPID verification and decryption on. Besides the rate, the table shows the
dispatcher's CPU per message (and its system part), and the CPU per message of this
process, where the SMTP sink and the push service run (in their own threads).

``BENCH_PROFILE=<dir>`` writes a CPU-time cProfile of each dispatcher run there
(``bench/cpu_profile.py``); ``BENCH_CONCURRENCY`` and ``BENCH_PREFETCH`` override the dispatcher's
64 sends in flight and prefetch of 128; ``BENCH_LOG_LEVEL`` its log level (WARNING).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import aio_pika  # noqa: E402
import asyncpg  # type: ignore[import-untyped]  # noqa: E402

from avisos_common import topology  # noqa: E402
from avisos_common.amqp import Publisher  # noqa: E402
from avisos_common.messages import EmailDelivery, PushDelivery  # noqa: E402
from avisos_dispatcher.vapid import generate_vapid_keys  # noqa: E402
from avisos_testkit.infra import Backing, drop_backing, make_backing  # noqa: E402
from avisos_testkit.push_service import PushService  # noqa: E402
from avisos_testkit.smtp import SmtpSink  # noqa: E402

TARGET_PER_SEC = 500
PUSH_USERS = 50


async def _users(db: asyncpg.Pool, n: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    await db.executemany(
        "INSERT INTO users (id, email, display_name, password_hash, roles, locale, timezone,"
        " is_active) VALUES ($1, $2, 'bench', 'x', '{staff}', 'es', 'Europe/Madrid', true)",
        [(u, f"{u.hex}@bench.test") for u in ids],
    )
    return ids


async def _fill(pub: Publisher, msgs: list[EmailDelivery] | list[PushDelivery], ch: str) -> None:
    key = topology.dispatch_routing_key(ch, "normal")  # type: ignore[arg-type]
    for i in range(0, len(msgs), 200):
        await asyncio.gather(
            *(pub.publish(topology.EXCHANGE_DISPATCH, key, m) for m in msgs[i : i + 200])
        )


def _dispatcher_env(b: Backing, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVISOS_")}
    env.update(b.env())
    env.update(
        {
            "AVISOS_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "AVISOS_CONCURRENCY": os.environ.get("BENCH_CONCURRENCY", "64"),
            "AVISOS_PREFETCH": os.environ.get("BENCH_PREFETCH", "128"),
            "AVISOS_SMTP_POOL_SIZE": "16",
            "AVISOS_RATE_EMAIL_PER_SEC": "100000",
            "AVISOS_RATE_PUSH_PER_SEC": "100000",
            "AVISOS_DB_POOL_SIZE": "20",
            **extra,
        }
    )
    return env


def _cpu_secs(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@dataclass
class Result:
    name: str
    got: int
    secs: float
    rate: float
    #: Dispatcher CPU per message while sending (start-up excluded), and its system part.
    cpu_ms: float
    sys_ms: float
    #: CPU of this process per message: the sinks (SMTP server / push service threads).
    sink_ms: float


async def _measure(
    name: str,
    b: Backing,
    db: asyncpg.Pool,
    received: list[float],
    n: int,
    env: dict[str, str],
    ids: list[uuid.UUID],
    timeout_secs: float,
) -> Result:
    # BENCH_PROFILE=dir: write a CPU-time cProfile of the dispatcher there.
    pdir = os.environ.get("BENCH_PROFILE")
    cmd = (
        [
            str(Path(__file__).parents[1] / "cpu_profile.py"),
            "avisos_dispatcher",
            f"{pdir}/prof-{name}.out",
        ]
        if pdir
        else ["-m", "avisos_dispatcher"]
    )
    proc = subprocess.Popen([sys.executable, *cmd], env=env)  # noqa: ASYNC220 - started once
    cpu_start = cpu_end = (0.0, 0.0)
    own_start = own_end = 0.0
    try:
        deadline = time.monotonic() + timeout_secs
        # The sinks fill ``received`` from their own threads: poll it.
        while not received and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        cpu_start, own_start, first = _cpu_secs(proc.pid), time.process_time(), len(received)
        while len(received) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        cpu_end, own_end = _cpu_secs(proc.pid), time.process_time()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
    got = len(received)
    per_msg = 1000 / max(1, got - first)
    user_ms = (cpu_end[0] - cpu_start[0]) * per_msg
    sys_ms = (cpu_end[1] - cpu_start[1]) * per_msg
    secs = (received[min(got, n) - 1] - received[0]) if got > 1 else float("nan")
    sent = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE delivery_id = ANY($1) AND status = 'sent'", ids
    )
    if sent != n or got < n:
        print(f"!! {name}: {got}/{n} received, {sent}/{n} recorded as sent", file=sys.stderr)
    rate = (got - 1) / secs if got > 1 else 0.0
    sink_ms = (own_end - own_start) * per_msg
    return Result(name, got, secs, rate, user_ms + sys_ms, sys_ms, sink_ms)


class StampedList(list):  # type: ignore[type-arg]
    """A list that notes when each item arrived (the sinks append what they receive)."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def append(self, item: object) -> None:
        self.stamps.append(time.monotonic())
        super().append(item)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small runs (~1 min)")
    ap.add_argument("--emails", type=int)
    ap.add_argument("--pushes", type=int)
    ap.add_argument("--verify-push", action="store_true")
    args = ap.parse_args()
    n_email = args.emails or (600 if args.quick else 3000)
    n_push = args.pushes or (600 if args.quick else 3000)

    b = await make_backing("bench")
    db = await asyncpg.create_pool(b.database_url, min_size=1, max_size=4)
    conn = await aio_pika.connect_robust(b.amqp_url)
    pub = await Publisher.open(conn)
    results: list[Result] = []
    try:
        [user] = await _users(db, 1)
        # --- email --------------------------------------------------------------------
        with SmtpSink() as sink:
            received = StampedList()
            sink.messages = received
            emails = [
                EmailDelivery(
                    delivery_id=uuid.uuid4(),
                    user_id=user,
                    to=f"b{i}@bench.test",
                    subject=f"Stock bajo #{i}",
                    text="Quedan 3 unidades del SKU 42.",
                    html="<p>Quedan <b>3</b> unidades del SKU 42.</p>",
                )
                for i in range(n_email)
            ]
            await _fill(pub, emails, "email")
            env = _dispatcher_env(
                b, {"AVISOS_CHANNELS": '["email"]', "AVISOS_SMTP_PORT": str(sink.port)}
            )
            results.append(
                await _measure(
                    "email",
                    b,
                    db,
                    received.stamps,
                    n_email,
                    env,
                    [m.delivery_id for m in emails],
                    120,
                )
            )
        # --- push ---------------------------------------------------------------------
        with PushService(verify=args.verify_push) as push:
            users = await _users(db, PUSH_USERS)
            for u in users:
                s = push.new_subscription()
                await db.execute(
                    "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    uuid.uuid4(),
                    u,
                    s["endpoint"],
                    s["keys"]["p256dh"],
                    s["keys"]["auth"],
                )
            preceived = StampedList()
            push.received = preceived
            keys = generate_vapid_keys()
            pushes = [
                PushDelivery(
                    delivery_id=uuid.uuid4(),
                    user_id=users[i % PUSH_USERS],
                    title="Stock bajo",
                    body=f"SKU {i}: quedan 3 unidades",
                    url="/n/1",
                )
                for i in range(n_push)
            ]
            await _fill(pub, pushes, "push")
            env = _dispatcher_env(
                b,
                {
                    "AVISOS_CHANNELS": '["push"]',
                    "AVISOS_VAPID_PRIVATE_KEY": keys.private_key,
                    "AVISOS_VAPID_SUBJECT": "mailto:bench@avisos.test",
                },
            )
            results.append(
                await _measure(
                    "push",
                    b,
                    db,
                    preceived.stamps,
                    n_push,
                    env,
                    [m.delivery_id for m in pushes],
                    120,
                )
            )
    finally:
        await conn.close()
        await db.close()
        await drop_backing(b)

    print(
        f"\n{'channel':<8} {'messages':>9} {'seconds':>8} {'per sec':>9} {'target':>7}  ok"
        f"  {'dispatcher CPU ms/msg':>22} {'of it system':>13} {'sink CPU ms/msg':>16}"
    )
    for r in results:
        ok = "yes" if r.rate >= TARGET_PER_SEC else "NO "
        print(
            f"{r.name:<8} {r.got:>9} {r.secs:>8.2f} {r.rate:>9.0f} {TARGET_PER_SEC:>7}  {ok}"
            f" {r.cpu_ms:>22.2f} {r.sys_ms:>13.2f} {r.sink_ms:>16.2f}"
        )
    print(f"load average at the end: {os.getloadavg()}")
    print(f"(cpus: {os.cpu_count()}; push service verify={args.verify_push})")


if __name__ == "__main__":
    asyncio.run(main())
