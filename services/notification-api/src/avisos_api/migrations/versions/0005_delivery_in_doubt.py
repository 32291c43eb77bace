"""deliveries.in_doubt_since and handed_over: what a dispatcher that died mid-send left.

``handed_over`` lists where a message's last bytes went before the provider answered: the
SMTP relay (after the final ``.`` of DATA) or the push subscriptions (after the last byte of
the request body). It is cleared with every recorded outcome, so a dispatcher that finds it
on a claim it takes over knows the dead one's message reached those, and does not send it
to them again.

Set by the dispatcher's claim statement when it takes over a ``sending`` claim whose lease
ran out (that dispatcher may have got the message accepted before dying), and kept through
later retries, so that every following attempt first asks a provider that can be asked
(Twilio) whether the message is already there. Written by hand, like 0003 and 0004: the
dispatcher writes this column with its own SQL (docs/channels.md, the crash window).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries", sa.Column("in_doubt_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("deliveries", sa.Column("handed_over", sa.ARRAY(sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("deliveries", "handed_over")
    op.drop_column("deliveries", "in_doubt_since")
