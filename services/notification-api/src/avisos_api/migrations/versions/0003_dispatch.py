"""dispatch: deliveries (idempotency + claim), delivery attempts (the log), dead letters.

Revision ID: 0003
Revises: 0002

``deliveries`` and ``delivery_attempts`` are written by the dispatcher (its own SQL); the
API reads them and records Twilio status callbacks. ``dead_letters`` is written by the
API's dead-letter recorder and replayed by admins.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("user_id", sa.UUID(), nullable=False),
        # sending (claimed) | sent | delivered | failed | bounced | undelivered | retrying
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claim_token", sa.UUID(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("delivery_id"),
    )
    op.create_index("ix_deliveries_user_created", "deliveries", ["user_id", "created_at"])
    op.create_index("ix_deliveries_notification", "deliveries", ["notification_id"])
    op.create_index(
        "ix_deliveries_provider_message",
        "deliveries",
        ["provider_message_id"],
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        # queued | sent | delivered | failed | bounced | undelivered
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        # What a fanned-out delivery addressed (push: the subscription id), so a retry
        # skips the targets an earlier attempt already reached.
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.delivery_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_delivery_attempts_delivery", "delivery_attempts", ["delivery_id"])
    op.create_index("ix_delivery_attempts_user", "delivery_attempts", ["user_id", "id"])
    op.create_index("ix_delivery_attempts_notification", "delivery_attempts", ["notification_id"])
    op.create_index("ix_delivery_attempts_started", "delivery_attempts", ["started_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        # sha256 of what makes one dead-lettering unique: the recorder is idempotent.
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("origin_queue", sa.String(length=200), nullable=True),
        sa.Column("origin_exchange", sa.String(length=200), nullable=True),
        sa.Column("origin_routing_key", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("replayed_by", sa.UUID(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key", name="uq_dead_letters_dedupe_key"),
    )
    op.create_index("ix_dead_letters_origin_queue", "dead_letters", ["origin_queue", "id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_origin_queue", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_delivery_attempts_started", table_name="delivery_attempts")
    op.drop_index("ix_delivery_attempts_notification", table_name="delivery_attempts")
    op.drop_index("ix_delivery_attempts_user", table_name="delivery_attempts")
    op.drop_index("ix_delivery_attempts_delivery", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_deliveries_provider_message", table_name="deliveries")
    op.drop_index("ix_deliveries_notification", table_name="deliveries")
    op.drop_index("ix_deliveries_user_created", table_name="deliveries")
    op.drop_table("deliveries")
