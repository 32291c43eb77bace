"""Seed data for the reports tests: known users, locations and notifications whose
expected figures the tests recompute from the database."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

RECALL_EVENT = "recall-2026-0042"
EVIL_SUBJECT = '=HYPERLINK("http://evil.example","click")'


@dataclass
class Seed:
    base: dt.datetime
    admin: uuid.UUID
    ana: uuid.UUID  # staff at M01, Spanish, Europe/Madrid
    bob: uuid.UUID  # staff at B02, Spanish, America/Mexico_City
    notification_ids: list[uuid.UUID] = field(default_factory=list)


def _user(
    conn: psycopg.Connection[Any], email: str, name: str, locale: str, tz: str, roles: list[str]
) -> uuid.UUID:
    uid = uuid.uuid4()
    conn.execute(
        """INSERT INTO users (id, email, display_name, password_hash, roles, locale, timezone,
                              is_active, notification_seq)
           VALUES (%s, %s, %s, 'x', %s, %s, %s, true, 0)""",
        (uid, email, name, roles, locale, tz),
    )
    return uid


def _location(conn: psycopg.Connection[Any], code: str, name: str) -> uuid.UUID:
    lid = uuid.uuid4()
    conn.execute(
        "INSERT INTO locations (id, code, name, kind) VALUES (%s, %s, %s, 'store')",
        (lid, code, name),
    )
    return lid


def add_notification(
    conn: psycopg.Connection[Any],
    recipient: uuid.UUID,
    *,
    created_at: dt.datetime,
    type_: str = "stock.low",
    category: str = "stock",
    priority: str = "normal",
    subject: str = "Stock bajo",
    data: dict[str, Any] | None = None,
    read_at: dt.datetime | None = None,
    source_event_id: str | None = None,
) -> uuid.UUID:
    nid = uuid.uuid4()
    seq = conn.execute(
        "UPDATE users SET notification_seq = notification_seq + 1 WHERE id = %s"
        " RETURNING notification_seq",
        (recipient,),
    ).fetchone()
    assert seq is not None
    conn.execute(
        """INSERT INTO notifications (id, recipient_id, seq, type, category, subject, message,
               priority, data, source_event_id, created_at, read_at)
           VALUES (%s, %s, %s, %s, %s, %s, 'msg', %s, %s::jsonb, %s, %s, %s)""",
        (
            nid,
            recipient,
            seq[0],
            type_,
            category,
            subject,
            priority,
            json.dumps(data or {}),
            source_event_id,
            created_at,
            read_at,
        ),
    )
    return nid


def seed_database(conn: psycopg.Connection[Any], base: dt.datetime) -> Seed:
    m01 = _location(conn, "M01", "Madrid Centro")
    b02 = _location(conn, "B02", "Barcelona Diagonal")
    admin = _user(conn, "admin@example.com", "Ada Admin", "en", "UTC", ["admin"])
    ana = _user(conn, "ana@example.com", "Ana García", "es", "Europe/Madrid", ["staff"])
    bob = _user(conn, "bob@example.com", "Bob Pérez", "es-MX", "America/Mexico_City", ["staff"])
    conn.execute("INSERT INTO user_locations VALUES (%s, %s)", (ana, m01))
    conn.execute("INSERT INTO user_locations VALUES (%s, %s)", (bob, b02))
    seed = Seed(base, admin, ana, bob)
    ids = seed.notification_ids
    # Activity: ana gets 4 stock notifications at M01 (3 read after 10, 20, 30 min),
    # bob gets 2 at B02 (1 read after 60 min) and one "security" one with a formula subject.
    for i, minutes in enumerate((10, 20, 30, None)):
        created = base + dt.timedelta(hours=i)
        ids.append(
            add_notification(
                conn,
                ana,
                created_at=created,
                type_="inventory.count",
                priority="high" if i == 0 else "normal",
                data={"location_code": "M01", "sku": f"SKU-{i}", "quantity": 2},
                read_at=created + dt.timedelta(minutes=minutes) if minutes else None,
            )
        )
    for i, minutes in enumerate((60, None)):
        created = base + dt.timedelta(hours=i, minutes=5)
        ids.append(
            add_notification(
                conn,
                bob,
                created_at=created,
                type_="inventory.count",
                data={"location_code": "B02", "sku": "SKU-9"},
                read_at=created + dt.timedelta(minutes=minutes) if minutes else None,
            )
        )
    ids.append(
        add_notification(
            conn,
            bob,
            created_at=base + dt.timedelta(hours=3),
            type_="security.notice",
            category="security",
            subject=EVIL_SUBJECT,
            data={"location_code": "B02"},
        )
    )
    # Inventory alerts (contract of docs/reports.md): one stock-out at M01 resolved after
    # 5 h and acknowledged, one low-stock at B02 still open.
    opened = base - dt.timedelta(days=1)
    add_notification(
        conn,
        ana,
        created_at=opened,
        type_="stock.out",
        category="stock",
        priority="critical",
        subject="Rotura de stock SKU-1",
        data={
            "location_code": "M01",
            "sku": "SKU-1",
            "quantity": 0,
            "alert": {"id": "al-1", "state": "open", "opened_at": opened.isoformat()},
        },
    )
    add_notification(
        conn,
        ana,
        created_at=opened + dt.timedelta(hours=5),
        type_="stock.restored",
        category="stock",
        subject="Repuesto SKU-1",
        data={
            "location_code": "M01",
            "sku": "SKU-1",
            "quantity": 40,
            "alert": {
                "id": "al-1",
                "state": "resolved",
                "opened_at": opened.isoformat(),
                "resolved_at": (opened + dt.timedelta(hours=5)).isoformat(),
                "acknowledged_by_name": "Ana García",
                "acknowledged_at": (opened + dt.timedelta(hours=1)).isoformat(),
            },
        },
    )
    add_notification(
        conn,
        bob,
        created_at=opened + dt.timedelta(hours=2),
        type_="stock.low",
        category="stock",
        subject="Stock bajo SKU-7",
        data={
            "location_code": "B02",
            "sku": "SKU-7",
            "quantity": 3,
            "alert": {
                "id": "al-2",
                "state": "open",
                "opened_at": (opened + dt.timedelta(hours=2)).isoformat(),
            },
        },
    )
    # Recall ledger: 3 recipients; ana read and acknowledged, bob read only, admin nothing.
    recall_at = base + dt.timedelta(hours=6)
    rid_ana = add_notification(
        conn,
        ana,
        created_at=recall_at,
        type_="product.recall",
        category="recall",
        priority="critical",
        subject="Retirada lote 42",
        source_event_id=RECALL_EVENT,
        read_at=recall_at + dt.timedelta(minutes=3),
        data={
            "location_code": "M01",
            "ack": {
                "at": (recall_at + dt.timedelta(minutes=15)).isoformat(),
                "by_name": "Ana García",
            },
        },
    )
    add_notification(
        conn,
        bob,
        created_at=recall_at,
        type_="product.recall",
        category="recall",
        priority="critical",
        subject="Retirada lote 42",
        source_event_id=RECALL_EVENT,
        read_at=recall_at + dt.timedelta(minutes=30),
        data={"location_code": "B02"},
    )
    add_notification(
        conn,
        admin,
        created_at=recall_at,
        type_="product.recall",
        category="recall",
        priority="critical",
        subject="Retirada lote 42",
        source_event_id=RECALL_EVENT,
        data={},
    )
    # Deliveries for the recall (email to ana delivered on the 2nd attempt).
    delivery = uuid.uuid4()
    conn.execute(
        """INSERT INTO deliveries (delivery_id, channel, notification_id, user_id, status,
               provider, attempts, created_at)
           VALUES (%s, 'email', %s, %s, 'delivered', 'smtp', 2, %s)""",
        (delivery, rid_ana, ana, recall_at),
    )
    for attempt, status, error, latency in (
        (1, "failed", "421 try later", 800),
        (2, "delivered", None, 200),
    ):
        conn.execute(
            """INSERT INTO delivery_attempts (delivery_id, channel, notification_id, user_id,
                   provider, status, error, attempt, started_at, finished_at, latency_ms)
               VALUES (%s, 'email', %s, %s, 'smtp', %s, %s, %s, %s, %s, %s)""",
            (
                delivery,
                rid_ana,
                ana,
                status,
                error,
                attempt,
                recall_at + dt.timedelta(seconds=attempt),
                recall_at + dt.timedelta(seconds=attempt, milliseconds=latency),
                latency,
            ),
        )
    sms = uuid.uuid4()
    conn.execute(
        """INSERT INTO deliveries (delivery_id, channel, notification_id, user_id, status,
               provider, attempts, created_at)
           VALUES (%s, 'sms', %s, %s, 'failed', 'twilio', 1, %s)""",
        (sms, rid_ana, ana, recall_at),
    )
    conn.execute(
        """INSERT INTO delivery_attempts (delivery_id, channel, notification_id, user_id,
               provider, status, error, attempt, started_at, finished_at, latency_ms)
           VALUES (%s, 'sms', %s, %s, 'twilio', 'failed', '=cmd|evil', 1, %s, %s, 1500)""",
        (sms, rid_ana, ana, recall_at, recall_at + dt.timedelta(milliseconds=1500)),
    )
    return seed


INTERNAL_TOKEN = "internal-token-for-tests-0123456789abcdef"


class InternalApiStub:
    """A tiny HTTP server standing in for ``POST /internal/v1/notifications``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 201
        self.event = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "json": body}
                )
                stub.event.set()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"created": 1}')

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def new_job(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    kind: str,
    params: dict[str, Any],
    *,
    email_copy: bool = False,
    status: str = "queued",
) -> uuid.UUID:
    job_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO report_jobs (id, requested_by, kind, params, email_copy, status)
           VALUES (%s, %s, %s, %s::jsonb, %s, %s)""",
        (job_id, user_id, kind, json.dumps(params), email_copy, status),
    )
    return job_id
