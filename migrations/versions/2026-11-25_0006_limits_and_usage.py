"""Per-key limits, usage and spend (app/limits).

Callers get optional limit overrides; keys get a display prefix, an expiry and an optional request rate;
`key_request_windows` counts requests per key; two indexes serve the spend, concurrency and usage queries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("callers", sa.Column("requests_per_minute", sa.Integer(), nullable=True))
    op.add_column("callers", sa.Column("max_concurrent_renders", sa.Integer(), nullable=True))
    op.add_column("callers", sa.Column("budget_usd_per_period", sa.Numeric(precision=12, scale=4), nullable=True))
    op.add_column("callers", sa.Column("budget_period", sa.String(length=10), nullable=True))
    op.create_check_constraint(op.f("ck_callers_budget_period_known"), "callers", "budget_period IN ('day', 'month')")
    op.create_check_constraint(op.f("ck_callers_requests_per_minute_positive"), "callers", "requests_per_minute >= 1")
    op.create_check_constraint(
        op.f("ck_callers_max_concurrent_renders_not_negative"), "callers", "max_concurrent_renders >= 0"
    )
    op.create_check_constraint(op.f("ck_callers_budget_not_negative"), "callers", "budget_usd_per_period >= 0")

    op.add_column("api_keys", sa.Column("prefix", sa.String(length=16), server_default="", nullable=False))
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("requests_per_minute", sa.Integer(), nullable=True))
    op.create_check_constraint(op.f("ck_api_keys_requests_per_minute_positive"), "api_keys", "requests_per_minute >= 1")

    op.create_table(
        "key_request_windows",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_count", sa.Integer(), nullable=False),
        sa.Column("previous_count", sa.Integer(), nullable=False),
        sa.Column("last_request_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_key_request_windows_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", name=op.f("pk_key_request_windows")),
    )

    op.create_index("ix_videos_caller_id_created_at", "videos", ["caller_id", "created_at"], unique=False)
    op.create_index(
        "ix_videos_caller_id_active",
        "videos",
        ["caller_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'in_progress')"),
    )


def downgrade() -> None:
    op.drop_index("ix_videos_caller_id_active", table_name="videos")
    op.drop_index("ix_videos_caller_id_created_at", table_name="videos")
    op.drop_table("key_request_windows")
    op.drop_constraint(op.f("ck_api_keys_requests_per_minute_positive"), "api_keys", type_="check")
    op.drop_column("api_keys", "requests_per_minute")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("api_keys", "prefix")
    op.drop_constraint(op.f("ck_callers_budget_not_negative"), "callers", type_="check")
    op.drop_constraint(op.f("ck_callers_max_concurrent_renders_not_negative"), "callers", type_="check")
    op.drop_constraint(op.f("ck_callers_requests_per_minute_positive"), "callers", type_="check")
    op.drop_constraint(op.f("ck_callers_budget_period_known"), "callers", type_="check")
    op.drop_column("callers", "budget_period")
    op.drop_column("callers", "budget_usd_per_period")
    op.drop_column("callers", "max_concurrent_renders")
    op.drop_column("callers", "requests_per_minute")
