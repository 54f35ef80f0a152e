"""Webhook deliveries (deduplicated) and the archive job queue (leases, deadlines, one live job per asset).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 07:48:35.710724
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("webhook_id", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("upstream_video_id", sa.String(length=200), nullable=True),
        sa.Column("video_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("webhook_id", name=op.f("uq_webhook_events_webhook_id")),
    )
    op.create_index(
        "ix_webhook_events_orphans",
        "webhook_events",
        ["upstream_video_id"],
        unique=False,
        postgresql_where=sa.text("outcome = 'orphan'"),
    )
    op.create_index(
        "uq_webhook_events_event_id",
        "webhook_events",
        ["event_id"],
        unique=True,
        postgresql_where=sa.text("event_id IS NOT NULL"),
    )
    op.create_table(
        "archive_jobs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("video_id", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=20), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(kind = 'download') = (variant IS NOT NULL)", name=op.f("ck_archive_jobs_variant_for_downloads")
        ),
        sa.CheckConstraint("kind IN ('sync', 'download')", name=op.f("ck_archive_jobs_kind_known")),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'expired', 'dead')",
            name=op.f("ck_archive_jobs_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], name=op.f("fk_archive_jobs_video_id_videos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_jobs")),
    )
    op.create_index(
        "ix_archive_jobs_leases",
        "archive_jobs",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_index(
        "ix_archive_jobs_runnable",
        "archive_jobs",
        ["run_after"],
        unique=False,
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.create_index(op.f("ix_archive_jobs_video_id"), "archive_jobs", ["video_id"], unique=False)
    op.create_index(
        "uq_archive_jobs_active",
        "archive_jobs",
        ["kind", "video_id", sa.literal_column("coalesce(variant, '')")],
        unique=True,
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_archive_jobs_active", table_name="archive_jobs", postgresql_where=sa.text("state IN ('queued', 'running')")
    )
    op.drop_index(op.f("ix_archive_jobs_video_id"), table_name="archive_jobs")
    op.drop_index("ix_archive_jobs_runnable", table_name="archive_jobs", postgresql_where=sa.text("state = 'queued'"))
    op.drop_index("ix_archive_jobs_leases", table_name="archive_jobs", postgresql_where=sa.text("state = 'running'"))
    op.drop_table("archive_jobs")
    op.drop_index(
        "uq_webhook_events_event_id", table_name="webhook_events", postgresql_where=sa.text("event_id IS NOT NULL")
    )
    op.drop_index(
        "ix_webhook_events_orphans", table_name="webhook_events", postgresql_where=sa.text("outcome = 'orphan'")
    )
    op.drop_table("webhook_events")
