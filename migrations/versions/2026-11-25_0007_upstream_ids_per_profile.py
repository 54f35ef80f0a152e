"""Upstream ids are unique per upstream profile; webhook deliveries remember their profile.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 08:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("uq_videos_upstream_id", "videos", type_="unique")
    op.create_unique_constraint("uq_videos_upstream_profile_upstream_id", "videos", ["upstream_profile", "upstream_id"])
    op.add_column(
        "webhook_events",
        sa.Column("upstream_profile", sa.String(length=100), server_default="default", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("webhook_events", "upstream_profile")
    op.drop_constraint("uq_videos_upstream_profile_upstream_id", "videos", type_="unique")
    op.create_unique_constraint("uq_videos_upstream_id", "videos", ["upstream_id"])
