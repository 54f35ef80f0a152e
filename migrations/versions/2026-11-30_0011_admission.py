"""Admission control: when each create was sent upstream, the images of creates waiting to be sent, `submit` jobs.

`videos.submitted_at` is when the paid create (or remix) call started; every existing row was sent when it was
created, so it is backfilled from `created_at`. A create accepted under a profile's limits waits with it NULL
until the worker's `submit` job sends it; its input_reference image waits in `video_inputs`. The partial
indexes serve the admission gate: a profile's waiting videos in arrival order, and its renders in flight.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = "kind IN ('sync', 'download')"
KINDS_AFTER = "kind IN ('sync', 'download', 'submit')"
WAITING = "submitted_at IS NULL AND upstream_id IS NULL AND status = 'queued' AND deleted_at IS NULL"
IN_FLIGHT = "submitted_at IS NOT NULL AND status IN ('queued', 'in_progress')"


def upgrade() -> None:
    op.add_column("videos", sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE videos SET submitted_at = created_at")
    op.create_index("ix_videos_waiting", "videos", ["upstream_profile", "seq"], postgresql_where=sa.text(WAITING))
    op.create_index("ix_videos_in_flight", "videos", ["upstream_profile"], postgresql_where=sa.text(IN_FLIGHT))
    op.create_index("ix_videos_upstream_profile_submitted_at", "videos", ["upstream_profile", "submitted_at"])
    op.create_table(
        "video_inputs",
        sa.Column("video_id", sa.String(length=64), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], name=op.f("fk_video_inputs_video_id_videos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("video_id", name=op.f("pk_video_inputs")),
    )
    op.drop_constraint(op.f("ck_archive_jobs_kind_known"), "archive_jobs", type_="check")
    op.create_check_constraint(op.f("ck_archive_jobs_kind_known"), "archive_jobs", KINDS_AFTER)


def downgrade() -> None:
    # Without admission control nothing would ever send a waiting create: fail those (never sent, so never
    # billed) rather than leave them queued for the reconciler to call "unknown".
    op.execute(
        "UPDATE videos SET status = 'failed', error_code = 'not_submitted', "
        "error_message = 'The gateway stopped admission control before this video was sent upstream; "
        "it was never rendered.' "
        "WHERE submitted_at IS NULL AND upstream_id IS NULL AND status = 'queued' AND deleted_at IS NULL"
    )
    op.execute("DELETE FROM archive_jobs WHERE kind = 'submit'")
    op.drop_constraint(op.f("ck_archive_jobs_kind_known"), "archive_jobs", type_="check")
    op.create_check_constraint(op.f("ck_archive_jobs_kind_known"), "archive_jobs", KINDS_BEFORE)
    op.drop_table("video_inputs")
    op.drop_index("ix_videos_upstream_profile_submitted_at", table_name="videos")
    op.drop_index("ix_videos_in_flight", table_name="videos", postgresql_where=sa.text(IN_FLIGHT))
    op.drop_index("ix_videos_waiting", table_name="videos", postgresql_where=sa.text(WAITING))
    op.drop_column("videos", "submitted_at")
