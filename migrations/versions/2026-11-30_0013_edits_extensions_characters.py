"""Edits, extensions and characters: how each video came to be, what it bills, and the callers' characters.

- `videos.origin`: `create`, `remix`, `edit` or `extension`. `remixed_from` keeps naming the source video of a
  remix, edit or extension made from one of the caller's videos (provenance); an edit or extension of an
  uploaded MP4 has none. Every row written before this revision is a create or a remix (`remixed_from` set).
- `videos.billed_seconds`: the seconds a render is charged for when that is not `seconds`: an extension's
  `seconds` is the stitched total, but only the new segment is rendered. NULL means `seconds`.
- `characters`: one row per character a caller made (our own `char_` id, upstream's id on its profile).

Adding a column with a constant default is a metadata-only change in Postgres 11+: no rows are rewritten and
the table is locked only for an instant. The new table is empty, so its indexes cost nothing to build.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("videos", sa.Column("origin", sa.String(length=20), nullable=False, server_default="create"))
    op.execute("UPDATE videos SET origin = 'remix' WHERE remixed_from IS NOT NULL")
    op.create_check_constraint(
        op.f("ck_videos_origin_known"), "videos", "origin IN ('create', 'remix', 'edit', 'extension')"
    )
    op.add_column("videos", sa.Column("billed_seconds", sa.Integer(), nullable=True))
    op.create_table(
        "characters",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("caller_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("upstream_profile", sa.String(length=100), nullable=False),
        sa.Column("upstream_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["caller_id"], ["callers.id"], name=op.f("fk_characters_caller_id_callers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_characters")),
        sa.UniqueConstraint("seq", name=op.f("uq_characters_seq")),
        sa.UniqueConstraint("upstream_profile", "upstream_id", name=op.f("uq_characters_upstream_profile_upstream_id")),
    )
    op.create_index("ix_characters_caller_id_seq", "characters", ["caller_id", "seq"])


def downgrade() -> None:
    # Characters are forgotten (upstream keeps them); edits and extensions stay as videos, read as creates,
    # and are billed for their whole stitched length again.
    op.drop_index("ix_characters_caller_id_seq", table_name="characters")
    op.drop_table("characters")
    op.drop_column("videos", "billed_seconds")
    op.drop_constraint(op.f("ck_videos_origin_known"), "videos", type_="check")
    op.drop_column("videos", "origin")
