"""Graceful shutdown of a dispatcher in the middle of a stream (what a rolling update or
`docker compose up --scale dispatcher=1` does): SIGTERM must let the sends in flight
finish and be acked, leave the rest to the other instance, and lose or repeat nothing."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from opskit import (
    EMAIL_QUEUES,
    Operator,
    SlowSmtpSink,
    dispatcher_env,
    duplicates,
    finish_create_admin,
    order_delayed,
    own_backing,
    publish,
    service_env,
    start_create_admin,
    wait_consumers,
    wait_settled,
)

from avisos_testkit.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
MANAGERS = 4
EVENTS = 30
#: Each email takes this long at the relay: sends are always in flight.
SMTP_DELAY_SECS = 0.2
#: The stopped dispatcher has sent this many before it gets SIGTERM.
STOP_AFTER_SENT = 15
#: Compose's stop_grace_period is 40 s; the dispatcher must be done well within it.
GRACE_SECS = 30.0
PUBLISHERS_IN_PARALLEL = 4

pytestmark = pytest.mark.timeout(180)


async def test_sigterm_mid_stream_loses_nothing_and_sends_nothing_twice() -> None:
    async with own_backing("shutdown") as backing:
        stack = Stack(
            service_env(backing), ROOT / "test-output" / "e2e" / f"shutdown-{backing.run}"
        )
        sink = SlowSmtpSink(SMTP_DELAY_SECS).start()
        try:
            # Everything starts at once (each process takes seconds to import on 2 cores).
            api = stack.start("api", name="api", wait=False)
            victim, survivor = (
                stack.start(
                    "dispatcher",
                    name=f"dispatcher-{i}",
                    wait=False,
                    extra_env={
                        **dispatcher_env(sink.port),
                        "AVISOS_EMAIL_FROM": f"d{i}@e2e.avisos",
                        "AVISOS_CONCURRENCY": "4",
                    },
                )
                for i in range(2)
            )
            admin_email = f"ops-admin-{uuid.uuid4().hex[:6]}@ops.e2e.avisos"
            create_admin = start_create_admin(api.env, admin_email)
            stack.wait_ready(api)
            await wait_consumers(backing.amqp_url, EMAIL_QUEUES, 2)
            finish_create_admin(create_admin)
            admin = await Operator.login(api.url, admin_email)
            store = await admin.location()
            managers = [await admin.manager(store) for _ in range(MANAGERS)]
            key = await admin.events_key()
            await admin.close()

            # The stream goes on in the background while the dispatcher is stopped.
            gate = asyncio.Semaphore(PUBLISHERS_IN_PARALLEL)

            async def send(i: int) -> None:
                async with gate:
                    await publish(api.url, key, order_delayed(store, f"PO-{i:04d}"))

            stream = asyncio.gather(*(send(i) for i in range(EVENTS)))

            def sent_by(sender: str) -> int:
                return sum(1 for m in list(sink.messages) if m.mail_from == sender)

            deadline = time.monotonic() + 60
            while sent_by("d0@e2e.avisos") < STOP_AFTER_SENT:
                assert time.monotonic() < deadline, "the dispatcher never got going"
                await asyncio.sleep(0.01)
            # Signal while it is sending (not between two messages of a slow stream): then
            # "it sent more after the signal" shows that it finished what it held.
            while True:
                at_signal = sent_by("d0@e2e.avisos")
                if sink.in_flight("d0@e2e.avisos") > 0:
                    break
                assert time.monotonic() < deadline, "the dispatcher never had a send in flight"
                await asyncio.sleep(0.002)
            expected = EVENTS * MANAGERS
            assert len(sink.messages) < expected, "the stream ended before the SIGTERM"
            started = time.monotonic()
            code = await asyncio.to_thread(stack.stop, victim.name, GRACE_SECS)
            took = time.monotonic() - started

            await stream
            assert code == 0, f"exit {code}:\n{victim.log()[-3000:]}"
            assert took < GRACE_SECS
            log = victim.log()
            assert "dispatcher stopped" in log and "Traceback" not in log
            # It finished what it held instead of dropping it.
            assert sent_by("d0@e2e.avisos") > at_signal

            # The other instance takes the rest; in the end every email went out once.
            await sink.await_count(expected, timeout_secs=60)
            await wait_settled(backing, expected)
            message_ids = [str(m.parse()["Message-ID"]) for m in sink.messages]
            assert not duplicates(message_ids), duplicates(message_ids)
            assert len(message_ids) == expected
            per_rcpt = Counter(r for m in sink.messages for r in m.rcpt_tos)
            assert per_rcpt == dict.fromkeys(managers, EVENTS)
            assert sent_by("d1@e2e.avisos") > 0
            assert "in doubt: a dispatcher died" not in survivor.log()
        finally:
            stack.stop_all()
            sink.stop()
