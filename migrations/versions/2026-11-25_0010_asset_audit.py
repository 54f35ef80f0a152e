"""Assets may be `lost` (the integrity audit's verdict), and remember when the audit last checked their object.

`audited_at` is NULL for every existing row, so the audit checks those first; its partial index serves the audit's
batch (archived rows, least recently checked first) without a sort.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES_BEFORE = "state IN ('pending', 'downloading', 'archived', 'failed', 'expired')"
STATES_AFTER = "state IN ('pending', 'downloading', 'archived', 'failed', 'expired', 'lost')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_assets_state_known"), "assets", type_="check")
    op.create_check_constraint(op.f("ck_assets_state_known"), "assets", STATES_AFTER)
    op.add_column("assets", sa.Column("audited_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_assets_audit_due",
        "assets",
        [sa.text("audited_at NULLS FIRST")],
        postgresql_where=sa.text("state = 'archived'"),
    )


def downgrade() -> None:
    op.drop_index("ix_assets_audit_due", table_name="assets")
    op.drop_column("assets", "audited_at")
    # A lost asset has no copy anywhere: before the state existed, that was `failed`.
    op.execute("UPDATE assets SET state = 'failed' WHERE state = 'lost'")
    op.drop_constraint(op.f("ck_assets_state_known"), "assets", type_="check")
    op.create_check_constraint(op.f("ck_assets_state_known"), "assets", STATES_BEFORE)
