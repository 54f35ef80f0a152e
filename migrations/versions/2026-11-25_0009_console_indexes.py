"""The operator console's indexes: keyset paging of videos (all, by status, by caller) and of webhook deliveries.

Every page of the console is an index range scan on (…, created_at, id) or (received_at, id), read in order,
so a page costs the same on the 100th page as on the first, with no sort and no OFFSET.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 11:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: dict[str, tuple[str, list[str]]] = {
    "ix_videos_created_at_id": ("videos", ["created_at", "id"]),
    "ix_videos_status_created_at_id": ("videos", ["status", "created_at", "id"]),
    "ix_videos_caller_id_created_at_id": ("videos", ["caller_id", "created_at", "id"]),
    "ix_webhook_events_received_at_id": ("webhook_events", ["received_at", "id"]),
    "ix_webhook_events_video_id": ("webhook_events", ["video_id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in reversed(INDEXES.items()):
        op.drop_index(name, table_name=table)
