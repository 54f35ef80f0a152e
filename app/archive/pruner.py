"""The pruner: deletes finished rows that retention (`VG_RETENTION__*`) no longer keeps, without holding up the queue.

What each table keeps (the predicates are the `prune_*` queries of queries.sql, each served by a partial index of
migration 0014):
- `archive_jobs`: every queued or running job, whatever its age; terminal ones (succeeded, failed, expired, dead)
  until `archive_jobs_days` after they finished. Nothing reads a finished job but the console's history of a
  video: the queue's uniqueness and the reconciler look at live jobs only.
- `webhook_events`: every event for `webhook_events_days` after it was received (the receiver's dedup record: keep
  it above the providers' redelivery windows), and every orphan for ever: the reconciler may still match it.
- `callback_attempts`: every attempt of a pending delivery; those of a finished one (delivered, failed,
  cancelled) until `callback_attempts_days` after it finished. The deliveries themselves stay (the outbox's one
  row per video, event and URL is what keeps a callback from being sent twice).

How a pass deletes: one worker at a time (a session advisory lock on the pass's own connection; a worker that
does not get it skips the pass), table after table, in batches of `batch_size` rows, each batch its own
transaction: `SELECT … ORDER BY <time> FOR UPDATE SKIP LOCKED LIMIT n` then `DELETE` of those rows, under a
transaction-local `lock_timeout` and `statement_timeout`. So a batch only ever locks the old finished rows it
deletes (rows another transaction holds are skipped, not waited for), never waits long for a lock (a waiting
DELETE would make later lockers queue behind it) and commits in milliseconds. A table's pass ends at a batch that
deletes fewer than `batch_size` rows, or after `max_batches_per_pass` batches (the next pass goes on), or at a
timeout (logged; the next pass tries again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.archive import queue
from app.core import metrics
from app.core.config import RetentionSettings
from app.core.db import Database

logger = logging.getLogger(__name__)

TABLES = ("archive_jobs", "webhook_events", "callback_attempts")
SECONDS_PER_DAY = 86_400.0
# Transaction-local limits of every batch. A batch waits for no row (SKIP LOCKED); the only locks it can wait for
# are table-level ones that DDL holds (a migration, VACUUM FULL): it gives up at once rather than queue.
LOCK_TIMEOUT = "50ms"
STATEMENT_TIMEOUT = "5s"
# SQLSTATEs of a batch cut short by those limits: lock_not_available, query_canceled.
TIMEOUT_SQLSTATES = frozenset({"55P03", "57014"})


@dataclass
class PruneReport:
    """One pass: rows deleted and batches (transactions) run per table, and how each table's pass ended."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    # Tables left with more to delete: `max_batches_per_pass` reached with a full last batch.
    backlog: list[str] = field(default_factory=list)
    # Tables whose pass a batch timeout ended, and why.
    interrupted: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # The longest batch, begin to commit: the longest any row lock of the pass was held.
    longest_batch_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def keep_seconds(settings: RetentionSettings) -> dict[str, float]:
    return {
        "archive_jobs": settings.archive_jobs_days * SECONDS_PER_DAY,
        "webhook_events": settings.webhook_events_days * SECONDS_PER_DAY,
        "callback_attempts": settings.callback_attempts_days * SECONDS_PER_DAY,
    }


async def prune_once(
    database: Database,
    settings: RetentionSettings,
    *,
    lock_timeout: str = LOCK_TIMEOUT,
    statement_timeout: str = STATEMENT_TIMEOUT,
) -> PruneReport | None:
    """One pass over every table; None when another worker is pruning (it holds the pruner's lock)."""
    started = time.monotonic()
    report = PruneReport()
    async with database.engine.connect() as connection:
        try:
            locked = await queue.try_prune_lock(connection)
            await connection.commit()
        except BaseException:
            await _discard(connection)  # whether it took the lock is unknown: its session goes, and the lock with it
            raise
        if not locked:
            logger.debug("pruner: another worker is pruning; pass skipped")
            return None
        try:
            for table, seconds in keep_seconds(settings).items():
                await _prune_table(
                    connection,
                    table,
                    keep=seconds,
                    settings=settings,
                    report=report,
                    lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout,
                )
        finally:
            await _unlock(connection)
    report.seconds = time.monotonic() - started
    _log(report)
    return report


async def _prune_table(
    connection: AsyncConnection,
    table: str,
    *,
    keep: float,
    settings: RetentionSettings,
    report: PruneReport,
    lock_timeout: str,
    statement_timeout: str,
) -> None:
    for _ in range(settings.max_batches_per_pass):
        began = time.monotonic()
        try:
            async with connection.begin():
                deleted = await queue.prune_batch(
                    connection,
                    table,
                    keep_seconds=keep,
                    batch_size=settings.batch_size,
                    lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout,
                )
        except DBAPIError as error:
            sqlstate = getattr(error.orig, "sqlstate", None)
            if sqlstate not in TIMEOUT_SQLSTATES:
                raise
            report.interrupted[table] = f"{type(error.orig).__name__} ({sqlstate})"
            return
        report.longest_batch_seconds = max(report.longest_batch_seconds, time.monotonic() - began)
        report.batches[table] += 1
        report.deleted[table] += deleted
        if deleted < settings.batch_size:
            return
    report.backlog.append(table)


async def _unlock(connection: AsyncConnection) -> None:
    """Release the pruner's lock; a connection that cannot is closed instead (its session, and lock, end with it),
    so a pooled connection never keeps the lock and stops every later pass."""
    try:
        if connection.in_transaction():
            await connection.rollback()
        await queue.prune_unlock(connection)
        await connection.commit()
    except asyncio.CancelledError:
        await _discard(connection)
        raise
    except Exception as error:
        logger.warning("pruner: could not release its lock (%s); closing its connection", type(error).__name__)
        await _discard(connection)


async def _discard(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await connection.invalidate()


def _log(report: PruneReport) -> None:
    for table in TABLES:
        if report.deleted[table]:
            metrics.pruned(table=table, rows=report.deleted[table])
    deleted = ", ".join(f"{report.deleted[table]} {table}" for table in TABLES)
    # A pass that found nothing to delete says so only at debug level: one line every interval would be noise.
    logger.log(
        logging.INFO if report.total else logging.DEBUG,
        "pruner: deleted %s in %d batch(es), %.2fs (longest batch %.0f ms)",
        deleted,
        sum(report.batches.values()),
        report.seconds,
        report.longest_batch_seconds * 1000,
    )
    if report.backlog:
        logger.info("pruner: more to delete in %s; the next pass goes on", ", ".join(report.backlog))
    for table, reason in report.interrupted.items():
        logger.warning("pruner: %s pass cut short by a timeout (%s); the next pass tries again", table, reason)
