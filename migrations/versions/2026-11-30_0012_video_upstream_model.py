"""Fallbacks across profiles: the provider's model id a video was rendered with, when it is not the caller's.

A create may render on a further profile (`VG_FALLBACKS`) whose provider names the model differently (Veo direct
`veo-3.1-generate-preview`, Veo on fal `fal-ai/veo3.1`). `videos.upstream_model` keeps the id that was sent, so
every later call about the video (the admission `submit` job, the reconciler's search for a cut-off create, a
remix) names it the same way; NULL means the same as `model`, which is every row written before this revision.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no rows and takes no long lock.
    op.add_column("videos", sa.Column("upstream_model", sa.String(length=100), nullable=True))


def downgrade() -> None:
    # Forgets which model a fallback sent. Polls, downloads and deletes go by upstream id and keep working; a
    # create still waiting for admission, or a cut-off one being searched for, would then name the caller's model
    # to that profile (and be refused, or not found: settled as unknown).
    op.drop_column("videos", "upstream_model")
