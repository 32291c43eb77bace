"""Scale-out with processes: two APIs, three gateways and two dispatchers (email, SMS
and Web Push each) on one PostgreSQL, Redis and RabbitMQ. A stream of inventory events
goes in through both APIs; every notification must reach its user's socket exactly once
(whichever gateway holds it), and every email, SMS (to the local Twilio stand-in) and Web
Push (to the local push service, VAPID-checked and decrypted) must be sent exactly once
(whichever dispatcher takes it). The managers differ in contact points (a phone or not,
zero to two push subscriptions), so what is expected follows from who can be reached.

This is what `docker compose up --scale ws-gateway=3 --scale dispatcher=2` relies on.
"""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from opskit import (
    Browser,
    Operator,
    dispatch_queues,
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

from avisos_api.cli import vapid_keypair
from avisos_common.messages import Channel
from avisos_common.topology import EXCHANGE_DISPATCH, EXCHANGE_REALTIME
from avisos_testkit.infra import Backing, free_port
from avisos_testkit.push_service import PushService
from avisos_testkit.smtp import SmtpSink
from avisos_testkit.stack import Running, Stack
from avisos_testkit.twilio_standin import TwilioStandIn

ROOT = Path(__file__).resolve().parents[2]
APIS, GATEWAYS, DISPATCHERS = 2, 3, 2
MANAGERS = 6
EVENTS = 40
PUBLISHERS_IN_PARALLEL = 8
DISPATCH_CHANNELS: tuple[Channel, ...] = ("email", "sms", "push")
#: The shipped rule the events match; the test adds "sms" to its channels.
ORDER_DELAYED_RULE = "order.delayed.warehouse"
#: Each manager gets this many SMS in the main test; the per-number hourly cap must not
#: swallow any (that cap has its own dispatcher test).
SMS_CAP_PER_HOUR = 1000
SETTLE_SECS = 90

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
    twilio: TwilioStandIn
    pushes: PushService
    admin_email: str


def sms_from(instance: int) -> str:
    """The sender number of dispatcher ``instance`` (shows who sent what)."""
    return f"+1500555000{instance}"


def vapid_subject(instance: int) -> str:
    """The VAPID subject of dispatcher ``instance`` (the push service keeps the claims)."""
    return f"mailto:d{instance}@e2e.avisos"


def phone(i: int) -> str | None:
    """Manager ``i``'s phone: every third one has none (SMS: no contact point)."""
    return None if i % 3 == 1 else f"+3460011{i:04d}"


def push_devices(i: int) -> int:
    """How many push subscriptions manager ``i`` has: 0, 1 or 2."""
    return i % 3


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with own_backing("scale") as backing:
        stack = Stack(service_env(backing), ROOT / "test-output" / "e2e" / f"scale-{backing.run}")
        sink = SmtpSink().start()
        twilio = TwilioStandIn().start()
        pushes = PushService().start()
        # One VAPID key for every dispatcher, as a deployment shares it.
        vapid_private, _ = vapid_keypair()
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
                        **dispatcher_env(sink.port, DISPATCH_CHANNELS),
                        "AVISOS_EMAIL_FROM": f"d{i}@e2e.avisos",
                        "AVISOS_TWILIO_ACCOUNT_SID": twilio.account_sid,
                        "AVISOS_TWILIO_AUTH_TOKEN": twilio.auth_token,
                        "AVISOS_TWILIO_BASE_URL": twilio.base_url,
                        "AVISOS_TWILIO_FROM": sms_from(i),
                        "AVISOS_SMS_PER_RECIPIENT_PER_HOUR": str(SMS_CAP_PER_HOUR),
                        "AVISOS_VAPID_PRIVATE_KEY": vapid_private,
                        "AVISOS_VAPID_SUBJECT": vapid_subject(i),
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
            # Dispatchers are ready when they consume: every channel, both lanes, every
            # instance.
            await wait_consumers(
                backing.amqp_url, dispatch_queues(DISPATCH_CHANNELS), DISPATCHERS, secs=60
            )
            finish_create_admin(create_admin)
            yield Cluster(
                backing, stack, apis, gateways, dispatchers, reports, sink, twilio, pushes, admin
            )
        finally:
            stack.stop_all()
            sink.stop()
            twilio.stop()
            pushes.stop()


async def add_push_subscriptions(
    backing: Backing, user_id: str, subscriptions: list[dict[str, Any]]
) -> None:
    """Straight into the database: the API accepts only https endpoints, the local push
    service is http."""
    conn = await asyncpg.connect(backing.database_url)
    try:
        for sub in subscriptions:
            await conn.execute(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                " VALUES ($1, $2, $3, $4, $5)",
                uuid.uuid4(),
                uuid.UUID(user_id),
                sub["endpoint"],
                sub["keys"]["p256dh"],
                sub["keys"]["auth"],
            )
    finally:
        await conn.close()


def order_id_in(text: str) -> str:
    """The order id (PO-...) an SMS body names."""
    found = re.findall(r"\bPO-[A-Z0-9-]+\b", text)
    assert len(found) == 1, text
    return str(found[0])


async def test_every_notification_email_sms_and_push_exactly_once(cluster: Cluster) -> None:
    c = cluster
    admin = await Operator.login(c.apis[0].url, c.admin_email)
    store = await admin.location()
    managers = [await admin.manager(store) for _ in range(MANAGERS)]
    # Contact points: a phone (PATCH as an admin does it) and push subscriptions.
    phones: dict[str, str] = {}
    devices: dict[str, list[str]] = {}  # manager -> the push service's subscription ids
    for i, email in enumerate(managers):
        number = phone(i)
        if number is not None:
            await admin.set_phone(email, number)
            phones[email] = number
        subs = [c.pushes.new_subscription() for _ in range(push_devices(i))]
        await add_push_subscriptions(c.backing, admin.user_ids[email], subs)
        devices[email] = [PushService.subscription_id(s["endpoint"]) for s in subs]
    channels = await admin.add_rule_channel(ORDER_DELAYED_RULE, "sms")
    assert set(channels) == {"in_app", *DISPATCH_CHANNELS}, channels
    key = await admin.events_key()
    await admin.close()
    pushed_to = [m for m in managers if devices[m]]

    # Users spread over the APIs (sessions) and the gateways (sockets).
    browsers: list[Browser] = []
    for i, email in enumerate(managers):
        b = await Browser.login(c.apis[i % APIS].url, email)
        await b.open(f"ws://127.0.0.1:{c.gateways[i % GATEWAYS].port}/ws")
        browsers.append(b)

    def expected(notified: int) -> dict[Channel, int]:
        """Deliveries per channel once ``notified`` events reached every manager: email
        to all, SMS to those with a phone, one push delivery (fanned out to every
        subscription) to those with a subscription."""
        return {
            "email": notified * MANAGERS,
            "sms": notified * len(phones),
            "push": notified * len(pushed_to),
        }

    def push_count(notified: int) -> int:
        return notified * sum(len(d) for d in devices.values())

    try:
        events = [order_delayed(store, f"PO-{i:04d}") for i in range(EVENTS)]
        gate = asyncio.Semaphore(PUBLISHERS_IN_PARALLEL)

        async def send(i: int) -> None:
            async with gate:
                await publish(c.apis[i % APIS].url, key, events[i])

        await asyncio.gather(*(send(i) for i in range(EVENTS)))

        await c.sink.await_count(expected(EVENTS)["email"], timeout_secs=SETTLE_SECS)
        await c.twilio.await_count(expected(EVENTS)["sms"], timeout_secs=SETTLE_SECS)
        await c.pushes.await_count(push_count(EVENTS), timeout_secs=SETTLE_SECS)
        await wait_settled(c.backing, expected(EVENTS), secs=SETTLE_SECS)
        # A last event after everything settled: once it is on a socket, nothing older
        # can still be on its way to that socket (each gateway's queue is FIFO).
        sentinel = order_delayed(store, "PO-SENTINEL")
        await publish(c.apis[1].url, key, sentinel)
        for b in browsers:
            await b.wait_for_event(sentinel["id"])

        all_events = [*events, sentinel]
        event_ids = {e["id"] for e in all_events}
        # notification id -> (manager, order id), from what reached the sockets.
        notifications: dict[str, tuple[str, str]] = {}
        order_of = {e["id"]: e["data"]["order_id"] for e in all_events}
        for b in browsers:
            pushed = b.notification_ids()
            assert not duplicates(pushed), f"{b.email} got duplicates {duplicates(pushed)}"
            assert sorted(pushed) == sorted(await b.listed_ids()), b.email
            assert set(b.source_event_ids()) == event_ids, b.email
            assert not b.of("notification_updated")
            for f in b.of("notification"):
                n = f["notification"]
                notifications[n["id"]] = (b.email, order_of[n["source_event_id"]])

        notified = len(all_events)
        await wait_settled(c.backing, expected(notified), secs=SETTLE_SECS)
        mails = c.sink.messages
        message_ids = [str(m.parse()["Message-ID"]) for m in mails]
        assert not duplicates(message_ids), f"emails sent twice: {duplicates(message_ids)}"
        assert len(mails) == expected(notified)["email"]
        per_manager = {m: 0 for m in managers}
        for m in mails:
            for rcpt in m.rcpt_tos:
                per_manager[rcpt] += 1
        assert set(per_manager.values()) == {notified}, per_manager

        # SMS: each (number, order) exactly once, and nothing to managers without a phone.
        sms = list(c.twilio.messages)
        sent_sms = Counter((s.to, order_id_in(s.body)) for s in sms)
        sms_twice = {k: n for k, n in sent_sms.items() if n > 1}
        assert not sms_twice, f"SMS sent twice: {sms_twice}"
        assert set(sent_sms) == {
            (number, order_of[e["id"]]) for e in all_events for number in phones.values()
        }
        assert len(sms) == expected(notified)["sms"]

        # Push: each (notification, subscription) exactly once, for that manager's devices.
        received = list(c.pushes.received)
        assert not c.pushes.rejected, c.pushes.rejected[:3]
        got = Counter(
            (str((r.payload or {}).get("notification_id")), r.subscription_id) for r in received
        )
        push_twice = {k: n for k, n in got.items() if n > 1}
        assert not push_twice, f"pushes sent twice: {push_twice}"
        assert set(got) == {
            (nid, sub) for nid, (m, _) in notifications.items() for sub in devices[m]
        }
        assert len(received) == push_count(notified)
        for r in received:
            assert r.payload is not None
            _manager, order = notifications[r.payload["notification_id"]]
            assert order in r.payload["title"], r.payload
    finally:
        for b in browsers:
            await b.close()

    conn = await asyncpg.connect(c.backing.database_url)
    try:
        # Each SMS the stand-in took is the one provider message of one delivery (one
        # notification, one user): the dispatchers recorded exactly what was sent.
        rows = await conn.fetch(
            "SELECT d.provider_message_id AS sid, d.notification_id, u.phone"
            " FROM deliveries d JOIN users u ON u.id = d.user_id WHERE d.channel = 'sms'"
        )
        assert sorted(r["sid"] for r in rows) == sorted(s.sid for s in sms)
        by_sid = {s.sid: s for s in sms}
        for r in rows:
            assert by_sid[r["sid"]].to == r["phone"]
            assert notifications[str(r["notification_id"])][1] in by_sid[r["sid"]].body
        # The request id given with each event travels on every message it caused (the
        # consumers bind it to their log lines): each delivery, and each realtime
        # announcement naming the event (one per recipient or one per chunk of them).
        rows = await conn.fetch(
            "SELECT exchange, headers->>'x-request-id' AS rid,"
            " convert_from(body, 'UTF8') AS body FROM outbox"
            " WHERE exchange = ANY($1::text[])",
            [EXCHANGE_DISPATCH, EXCHANGE_REALTIME],
        )
    finally:
        await conn.close()
    by_exchange = Counter((r["exchange"], r["rid"]) for r in rows)
    realtime = [r for r in rows if r["exchange"] == EXCHANGE_REALTIME]
    per_event = sum(expected(1).values())  # deliveries one event causes
    for event in all_events:
        rid = f"ops-{event['id']}"
        assert by_exchange[(EXCHANGE_DISPATCH, rid)] == per_event, rid
        announced = [r for r in realtime if event["id"] in r["body"]]
        assert {r["rid"] for r in announced} == {rid}, rid
        made = [nid for nid, (_, order) in notifications.items() if order == order_of[event["id"]]]
        assert len(made) == MANAGERS, event["id"]
        for nid in made:
            assert any(nid in r["body"] for r in announced), (rid, nid)

    # Every instance is still up, and every dispatcher took a share of each channel.
    for run in (*c.dispatchers, *c.apis, *c.gateways):
        assert run.process.poll() is None, f"{run.name} died:\n{run.log()[-2000:]}"
    senders = Counter(m.mail_from for m in c.sink.messages)
    assert set(senders) == {f"d{i}@e2e.avisos" for i in range(DISPATCHERS)}, senders
    sms_senders = Counter(s.from_ for s in sms)
    assert set(sms_senders) == {sms_from(i) for i in range(DISPATCHERS)}, sms_senders
    push_senders = Counter((r.claims or {}).get("sub") for r in received)
    assert set(push_senders) == {vapid_subject(i) for i in range(DISPATCHERS)}, push_senders


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
