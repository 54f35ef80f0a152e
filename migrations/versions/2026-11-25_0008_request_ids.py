"""Webhook deliveries and archive jobs remember the request id that caused them (log correlation).

The column's default reads the transaction-local setting `vg.request_id` (set by
`app.core.logging.stamp_transaction`), so the queue's SQL needs no new parameter.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REQUEST_ID_DEFAULT = sa.text("nullif(current_setting('vg.request_id', true), '')")


def upgrade() -> None:
    for table in ("webhook_events", "archive_jobs"):
        op.add_column(
            table, sa.Column("request_id", sa.String(length=64), server_default=REQUEST_ID_DEFAULT, nullable=True)
        )


def downgrade() -> None:
    for table in ("archive_jobs", "webhook_events"):
        op.drop_column(table, "request_id")
