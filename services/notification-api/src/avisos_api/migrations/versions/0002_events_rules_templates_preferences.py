"""events, rules, templates, preferences: the tables of issue 4 (events, rules, alerts).

Written by hand. ``alerts`` and the ``data.alert`` object of notifications are read by the
reports service (see docs/rules-and-templates.md): their column names are a contract.
The rules Avisos ships are seeded here (``builtin_key`` set), once: an admin who deletes
or edits one keeps that choice.

Revision ID: 0002
Revises: 0001
"""

import json
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def _ts(name: str, nullable: bool = True, default: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=_NOW if default else None,
    )


#: The rules Avisos ships with. Keys are stable; ids are derived from them.
DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "builtin_key": "stock.low.store-managers",
        "name": "Low stock: store managers",
        "event_types": ["stock.low"],
        "roles": ["manager"],
        "priority": "normal",
        "category": "inventory",
        "channels": ["in_app", "push"],
    },
    {
        "builtin_key": "stock.out.store-team",
        "name": "Out of stock: store managers and staff",
        "event_types": ["stock.out"],
        "roles": ["manager", "staff"],
        "priority": "high",
        "category": "inventory",
        "channels": ["in_app", "email", "push"],
    },
    {
        "builtin_key": "order.received.store-staff",
        "name": "Order received: staff of the receiving location",
        "event_types": ["order.received"],
        "roles": ["staff"],
        "priority": "low",
        "category": "orders",
        "channels": ["in_app", "email"],
    },
    {
        "builtin_key": "order.delayed.warehouse",
        "name": "Order delayed: staff and managers of the receiving location",
        "event_types": ["order.delayed"],
        "roles": ["staff", "manager"],
        "priority": "high",
        "category": "orders",
        "channels": ["in_app", "email", "push"],
    },
    {
        "builtin_key": "transfer.requested.managers",
        "name": "Transfer requested: managers of the shipping location",
        "event_types": ["transfer.requested"],
        "roles": ["manager"],
        "priority": "normal",
        "category": "transfers",
        "channels": ["in_app", "email"],
    },
    {
        "builtin_key": "transfer.completed.managers",
        "name": "Transfer completed: managers of the receiving location",
        "event_types": ["transfer.completed"],
        "roles": ["manager"],
        "priority": "low",
        "category": "transfers",
        "channels": ["in_app"],
    },
    {
        "builtin_key": "price.changed.store-team",
        "name": "Price changed: store team",
        "event_types": ["price.changed"],
        "roles": ["manager", "staff"],
        "priority": "low",
        "category": "pricing",
        "channels": ["in_app", "email"],
    },
    {
        "builtin_key": "lot.expiring.store-managers",
        "name": "Lot expiring: store managers (critical, escalates)",
        "event_types": ["lot.expiring"],
        "roles": ["manager"],
        "priority": "critical",
        "category": "expiry",
        "channels": ["in_app", "email", "sms", "push"],
        "ack_timeout_minutes": 30,
        "escalation": [
            {"after_minutes": 30, "roles": ["manager"], "scope": "location", "channels": ["sms"]},
            {
                "after_minutes": 60,
                "roles": ["manager"],
                "scope": "region",
                "channels": ["sms", "email"],
            },
        ],
    },
]

_RULE_NS = uuid.UUID("0b8f7a52-8c2d-4a53-9d0f-6a1f4b3b2c01")


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("builtin_key", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("event_types", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("conditions", postgresql.JSONB(), nullable=False, server_default="[]"),
        sa.Column("roles", postgresql.ARRAY(sa.String()), nullable=False, server_default="{}"),
        sa.Column("location_scope", sa.String(length=8), nullable=False, server_default="event"),
        sa.Column(
            "location_codes", postgresql.ARRAY(sa.String()), nullable=False, server_default="{}"
        ),
        sa.Column("user_ids", postgresql.ARRAY(sa.UUID()), nullable=False, server_default="{}"),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("channels", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("ack_timeout_minutes", sa.Integer(), nullable=True),
        sa.Column("escalation", postgresql.JSONB(), nullable=False, server_default="[]"),
        sa.Column("email_delay_minutes", sa.Integer(), nullable=True),
        _ts("created_at", nullable=False, default=True),
        _ts("updated_at", nullable=False, default=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("builtin_key"),
    )
    op.create_index("ix_rules_event_types", "rules", ["event_types"], postgresql_using="gin")

    op.create_table(
        "alerts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("location_code", sa.String(length=32), nullable=False),
        sa.Column("condition", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=True),
        _ts("opened_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("resolved_at"),
        sa.Column("acknowledged_by", sa.UUID(), nullable=True),
        _ts("acknowledged_at"),
        sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0"),
        _ts("next_escalation_at"),
        sa.Column("rule_id", sa.UUID(), nullable=True),
        sa.Column("opened_by_event", sa.String(length=401), nullable=True),
        sa.Column("last_event", sa.String(length=401), nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False, server_default="1"),
        sa.ForeignKeyConstraint(["acknowledged_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["rule_id"], ["rules.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_alerts_open",
        "alerts",
        ["sku", "location_code", "condition"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index(
        "ix_alerts_escalation_due",
        "alerts",
        ["next_escalation_at"],
        postgresql_where=sa.text("state = 'open' AND acknowledged_by IS NULL"),
    )
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"])

    op.create_table(
        "events",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        _ts("time", nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("received_via", sa.String(length=8), nullable=False),
        _ts("received_at", nullable=False, default=True),
        sa.Column("notification_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("alert_id", sa.UUID(), nullable=True),
        sa.Column("acknowledged_by", sa.UUID(), nullable=True),
        _ts("acknowledged_at"),
        sa.ForeignKeyConstraint(["acknowledged_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("source", "id", name="uq_events_source_id"),
    )
    op.create_index("ix_events_type", "events", ["type"])
    op.create_index("ix_events_received_at", "events", ["received_at"])

    op.create_table(
        "templates",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("parts", postgresql.JSONB(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("last_error_at"),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        _ts("created_at", nullable=False, default=True),
        _ts("updated_at", nullable=False, default=True),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_type", "channel", "locale"),
    )

    op.create_table(
        "preferences",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("updated_at", nullable=False, default=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "category", "channel"),
    )

    op.create_table(
        "notification_settings",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("digest", sa.String(length=8), nullable=False, server_default="off"),
        _ts("updated_at", nullable=False, default=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )

    op.create_table(
        "scheduled_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        _ts("due_at", nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("digest_window", sa.String(length=64), nullable=True),
        _ts("created_at", nullable=False, default=True),
        _ts("released_at"),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_scheduled_due",
        "scheduled_deliveries",
        ["due_at"],
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index("ix_scheduled_deliveries_user_id", "scheduled_deliveries", ["user_id"])

    # Notifications of one alert are found by data->'alert'->>'id' (updates in place).
    op.create_index(
        "ix_notifications_alert_id",
        "notifications",
        [sa.text("(data -> 'alert' ->> 'id')")],
        postgresql_where=sa.text("data ? 'alert'"),
    )

    rules = sa.table(
        "rules",
        sa.column("id", sa.UUID()),
        sa.column("builtin_key", sa.String()),
        sa.column("name", sa.String()),
        sa.column("enabled", sa.Boolean()),
        sa.column("event_types", postgresql.ARRAY(sa.String())),
        sa.column("conditions", postgresql.JSONB()),
        sa.column("roles", postgresql.ARRAY(sa.String())),
        sa.column("location_scope", sa.String()),
        sa.column("location_codes", postgresql.ARRAY(sa.String())),
        sa.column("user_ids", postgresql.ARRAY(sa.UUID())),
        sa.column("priority", sa.String()),
        sa.column("category", sa.String()),
        sa.column("channels", postgresql.ARRAY(sa.String())),
        sa.column("ack_timeout_minutes", sa.Integer()),
        sa.column("escalation", postgresql.JSONB()),
    )
    op.bulk_insert(
        rules,
        [
            {
                "id": uuid.uuid5(_RULE_NS, r["builtin_key"]),
                "builtin_key": r["builtin_key"],
                "name": r["name"],
                "enabled": True,
                "event_types": r["event_types"],
                "conditions": json.loads(json.dumps(r.get("conditions", []))),
                "roles": r["roles"],
                "location_scope": "event",
                "location_codes": [],
                "user_ids": [],
                "priority": r["priority"],
                "category": r["category"],
                "channels": r["channels"],
                "ack_timeout_minutes": r.get("ack_timeout_minutes"),
                "escalation": r.get("escalation", []),
            }
            for r in DEFAULT_RULES
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_alert_id", table_name="notifications")
    op.drop_table("scheduled_deliveries")
    op.drop_table("notification_settings")
    op.drop_table("preferences")
    op.drop_table("templates")
    op.drop_table("events")
    op.drop_table("alerts")
    op.drop_table("rules")
