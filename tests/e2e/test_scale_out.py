"""Scale-out with processes: two APIs, three gateways and two dispatchers on one
PostgreSQL, Redis and RabbitMQ. A stream of inventory events goes in through both APIs;
every notification must reach its user's socket exactly once (whichever gateway holds
it) and every email must be sent exactly once (whichever dispatcher takes it).

This is what `docker compose up --scale ws-gateway=3 --scale dispatcher=2` relies on.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from opskit import (
    EMAIL_QUEUES,
    Browser,
    Operator,
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

from avisos_common.topology import EXCHANGE_DISPATCH, EXCHANGE_REALTIME
from avisos_testkit.infra import Backing, free_port
from avisos_testkit.smtp import SmtpSink
from avisos_testkit.stack import Running, Stack

ROOT = Path(__file__).resolve().parents[2]
APIS, GATEWAYS, DISPATCHERS = 2, 3, 2
MANAGERS = 6
EVENTS = 40
PUBLISHERS_IN_PARALLEL = 8

pytestmark = pytest.mark.timeout(240)

#: A queue each kind of process consumes with avisos_common.amqp.Worker.
CONSUMED = {"avisos_api": "avisos.dead-letters", "avisos_reports": "avisos.reports.jobs"}


@dataclass
class Cluster:
    backing: Backing
    stack: Stack
    apis: list[Running]
    gateways: list[Running]
    dispatchers: list[Running]
    reports: Running
    sink: SmtpSink
    admin_email: str


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with own_backing("scale") as backing:
        stack = Stack(service_env(backing), ROOT / "test-output" / "e2e" / f"scale-{backing.run}")
        sink = SmtpSink().start()
        try:
            # Everything starts at once (each process takes seconds to import on 2 cores).
            apis = [stack.start("api", name=f"api-{i}", wait=False) for i in range(APIS)]
            gateways = [
                stack.start(
                    "gateway",
                    name=f"gateway-{i}",
                    wait=False,
                    extra_env={"AVISOS_API_INTERNAL_URL": apis[i % APIS].url},
                )
                for i in range(GATEWAYS)
            ]
            dispatchers = [
                stack.start(
                    "dispatcher",
                    name=f"dispatcher-{i}",
                    wait=False,
                    # A sender address per instance shows who sent what.
                    extra_env={
                        **dispatcher_env(sink.port),
                        "AVISOS_EMAIL_FROM": f"d{i}@e2e.avisos",
                        "AVISOS_METRICS_PORT": str(free_port()),
                    },
                )
                for i in range(DISPATCHERS)
            ]
            # One reports instance, for the endpoint checks (compose and k8s probe it).
            reports = stack.start(
                "reports",
                name="reports",
                wait=False,
                extra_env={
                    "AVISOS_API_INTERNAL_URL": apis[0].url,
                    "AVISOS_REPORTS_DIR": str(stack.log_dir / "reports"),
                },
            )
            admin = f"ops-admin-{uuid.uuid4().hex[:6]}@ops.e2e.avisos"
            create_admin = start_create_admin(apis[0].env, admin)
            for run in (*apis, *gateways, reports):
                stack.wait_ready(run)
            # Dispatchers are ready when they consume: both lanes, every instance.
            await wait_consumers(backing.amqp_url, EMAIL_QUEUES, DISPATCHERS)
            finish_create_admin(create_admin)
            yield Cluster(backing, stack, apis, gateways, dispatchers, reports, sink, admin)
        finally:
            stack.stop_all()
            sink.stop()


async def test_every_notification_and_email_exactly_once(cluster: Cluster) -> None:
    c = cluster
    admin = await Operator.login(c.apis[0].url, c.admin_email)
    store = await admin.location()
    managers = [await admin.manager(store) for _ in range(MANAGERS)]
    key = await admin.events_key()
    await admin.close()

    # Users spread over the APIs (sessions) and the gateways (sockets).
    browsers: list[Browser] = []
    for i, email in enumerate(managers):
        b = await Browser.login(c.apis[i % APIS].url, email)
        await b.open(f"ws://127.0.0.1:{c.gateways[i % GATEWAYS].port}/ws")
        browsers.append(b)

    try:
        events = [order_delayed(store, f"PO-{i:04d}") for i in range(EVENTS)]
        gate = asyncio.Semaphore(PUBLISHERS_IN_PARALLEL)

        async def send(i: int) -> None:
            async with gate:
                await publish(c.apis[i % APIS].url, key, events[i])

        await asyncio.gather(*(send(i) for i in range(EVENTS)))

        expected_emails = EVENTS * MANAGERS
        await c.sink.await_count(expected_emails, timeout_secs=60)
        await wait_settled(c.backing, expected_emails)
        # A last event after everything settled: once it is on a socket, nothing older
        # can still be on its way to that socket (each gateway's queue is FIFO).
        sentinel = order_delayed(store, "PO-SENTINEL")
        await publish(c.apis[1].url, key, sentinel)
        for b in browsers:
            await b.wait_for_event(sentinel["id"])

        event_ids = {e["id"] for e in events} | {sentinel["id"]}
        for b in browsers:
            pushed = b.notification_ids()
            assert not duplicates(pushed), f"{b.email} got duplicates {duplicates(pushed)}"
            assert sorted(pushed) == sorted(await b.listed_ids()), b.email
            assert set(b.source_event_ids()) == event_ids, b.email
            assert not b.of("notification_updated")

        await wait_settled(c.backing, expected_emails + MANAGERS)
        mails = c.sink.messages
        message_ids = [str(m.parse()["Message-ID"]) for m in mails]
        assert not duplicates(message_ids), f"emails sent twice: {duplicates(message_ids)}"
        assert len(mails) == expected_emails + MANAGERS
        per_manager = {m: 0 for m in managers}
        for m in mails:
            for rcpt in m.rcpt_tos:
                per_manager[rcpt] += 1
        assert set(per_manager.values()) == {EVENTS + 1}, per_manager
    finally:
        for b in browsers:
            await b.close()

    # The request id given with each event travels on every message it caused (the
    # consumers bind it to their log lines).
    conn = await asyncpg.connect(c.backing.database_url)
    try:
        rows = await conn.fetch(
            "SELECT exchange, headers->>'x-request-id' AS rid FROM outbox"
            " WHERE exchange = ANY($1::text[])",
            [EXCHANGE_DISPATCH, EXCHANGE_REALTIME],
        )
    finally:
        await conn.close()
    by_exchange = Counter((r["exchange"], r["rid"]) for r in rows)
    for event in (*events, sentinel):
        rid = f"ops-{event['id']}"
        assert by_exchange[(EXCHANGE_DISPATCH, rid)] == MANAGERS, rid
        assert by_exchange[(EXCHANGE_REALTIME, rid)] >= MANAGERS, rid

    # Every instance is still up, and every dispatcher took a share of the emails.
    for run in (*c.dispatchers, *c.apis, *c.gateways):
        assert run.process.poll() is None, f"{run.name} died:\n{run.log()[-2000:]}"
    senders = Counter(m.mail_from for m in c.sink.messages)
    assert set(senders) == {f"d{i}@e2e.avisos" for i in range(DISPATCHERS)}, senders


async def test_every_instance_serves_health_readiness_and_metrics(cluster: Cluster) -> None:
    """What the compose health checks, the k8s probes and Prometheus rely on."""
    expected = {
        "api": "avisos_api_request_seconds",
        "gateway": "avisos_gateway_connections",
        "reports": "avisos_reports_jobs_total",
    }
    async with httpx.AsyncClient(timeout=5) as http:
        for run in (*cluster.apis, *cluster.gateways, cluster.reports):
            for path in ("/healthz", "/readyz"):
                assert (await http.get(f"{run.url}{path}")).status_code == 200, (run.name, path)
            metrics = (await http.get(f"{run.url}/metrics")).text
            assert expected[run.spec.module.removeprefix("avisos_")] in metrics, run.name
            consumed = CONSUMED.get(run.spec.module)
            if consumed is not None:  # the consumer outcome counters of avisos_common.amqp
                for family in ("processed", "retried", "dead_lettered"):
                    assert f'avisos_messages_{family}_total{{queue="{consumed}"}}' in metrics
        for run in cluster.dispatchers:
            url = f"http://127.0.0.1:{run.env['AVISOS_METRICS_PORT']}"
            ready = await http.get(f"{url}/readyz")
            assert ready.status_code == 200, run.name
            assert (await http.get(f"{url}/healthz")).status_code == 200
            metrics = (await http.get(f"{url}/metrics")).text
            email_urgent = 'queue="avisos.dispatch.email.urgent"'
            assert f"avisos_messages_processed_total{{{email_urgent}}}" in metrics


async def test_gateway_sigterm_mid_stream_clients_resume_elsewhere(cluster: Cluster) -> None:
    """A gateway leaving (scale-in, rolling update) closes its sockets with 1001; the
    clients reconnect to another gateway with their cursor and miss nothing, see nothing
    twice. Runs last in this module: it stops gateway-0."""
    c = cluster
    victim, other = c.gateways[0], c.gateways[1]
    admin = await Operator.login(c.apis[0].url, c.admin_email)
    store = await admin.location()
    managers = [await admin.manager(store) for _ in range(3)]
    key = await admin.events_key()
    await admin.close()
    browsers = [await Browser.login(c.apis[0].url, email) for email in managers]
    events = [order_delayed(store, f"PO-R{i:03d}") for i in range(EVENTS // 2)]
    try:
        for b in browsers:
            await b.open(f"ws://127.0.0.1:{victim.port}/ws")

        async def stream() -> None:
            for i, event in enumerate(events):
                await publish(c.apis[i % APIS].url, key, event)

        publishing = asyncio.create_task(stream())
        for b in browsers:
            await b.wait_for_notifications(3)
        code = await asyncio.to_thread(c.stack.stop, victim.name, 20.0)
        assert code == 0, victim.log()[-2000:]
        for b in browsers:
            assert b.close_codes == [1001], b.close_codes  # going away: reconnect elsewhere
            await b.reconnect(f"ws://127.0.0.1:{other.port}/ws")
        await publishing
        for b in browsers:
            await b.wait_for_notifications(len(events))
        sentinel = order_delayed(store, "PO-R-SENTINEL")
        await publish(c.apis[0].url, key, sentinel)
        for b in browsers:
            await b.wait_for_event(sentinel["id"])
            pushed = b.notification_ids()
            assert not duplicates(pushed), duplicates(pushed)
            assert sorted(pushed) == sorted(await b.listed_ids())
            assert set(b.source_event_ids()) == {e["id"] for e in (*events, sentinel)}
    finally:
        for b in browsers:
            await b.close()
