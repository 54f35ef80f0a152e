"""The pruner's indexes: finished archive jobs, old webhook events and callback attempts, oldest first.

The pruner (app/archive/pruner.py) deletes in small batches what retention no longer keeps. Each batch takes the
oldest rows through one of these indexes; the partial ones hold only what may ever be deleted, so the queue's
live jobs and the reconciler's orphan events are not even in them:
- `ix_archive_jobs_prunable`: archive_jobs (finished_at) of terminal jobs (succeeded, failed, expired, dead);
- `ix_webhook_events_prunable`: webhook_events (received_at) of events that are not orphans;
- `ix_callback_attempts_attempted_at`: callback_attempts (attempted_at).

These tables may be large on a live gateway: every index is built (and dropped) CONCURRENTLY, which does not
block writes, outside a transaction (Alembic's autocommit block). A build that failed half way (a cancelled
migration) leaves an invalid index of the same name behind: it is dropped and built again on the next run.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name: (table, columns, partial index predicate or None)
INDEXES: dict[str, tuple[str, list[str], str | None]] = {
    "ix_archive_jobs_prunable": (
        "archive_jobs",
        ["finished_at"],
        "state IN ('succeeded', 'failed', 'expired', 'dead')",
    ),
    "ix_webhook_events_prunable": (
        "webhook_events",
        ["received_at"],
        "outcome IN ('enqueued', 'ignored', 'matched')",
    ),
    "ix_callback_attempts_attempted_at": ("callback_attempts", ["attempted_at"], None),
}


def _valid(name: str) -> bool | None:
    """True: the index exists and is usable; False: a failed concurrent build left it invalid; None: absent (or
    unknown: `--sql` output, where the CREATE is written as IF NOT EXISTS)."""
    if op.get_context().as_sql:
        return None
    found = op.get_bind().execute(
        sa.text(
            "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
        ),
        {"name": name},
    )
    return found.scalar_one_or_none()


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, (table, columns, where) in INDEXES.items():
            valid = _valid(name)
            if valid:
                continue
            if valid is False:
                op.drop_index(name, table_name=table, postgresql_concurrently=True)
            op.create_index(
                name,
                table,
                columns,
                postgresql_where=sa.text(where) if where is not None else None,
                postgresql_concurrently=True,
                if_not_exists=op.get_context().as_sql,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, (table, _, _) in reversed(INDEXES.items()):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
