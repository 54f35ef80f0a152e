"""Videos remember their upstream profile, callback URL and caller metadata.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:30:00
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
    op.add_column(
        "videos", sa.Column("upstream_profile", sa.String(length=100), server_default="default", nullable=False)
    )
    op.add_column("videos", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column("videos", sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("videos", "metadata")
    op.drop_column("videos", "callback_url")
    op.drop_column("videos", "upstream_profile")
