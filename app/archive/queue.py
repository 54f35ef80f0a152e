"""The archive job queue: the only module that runs `queries.sql`, and the one owner of the `archive_jobs` rows
(decision 008: no ORM query of them anywhere). The queue's queries run on the caller's session; the pruner's on
the connection its pass holds.

Enqueueing on the caller's session is what lets a webhook delivery and its job commit together; the receiver's
common case goes further: one statement records the delivery and queues its job (`record_video_event`, decision
009, the one query here that inserts into `webhook_events`). A claimed job carries its lease token; every later
change is fenced by it, so a worker that lost its lease (paused, cut off, presumed dead) changes nothing when it
wakes up.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.db import Database
from app.models import JobKind, JobState

_BLOCK = re.compile(r"^-- name: (?P<name>[a-z_]+)\n(?P<body>.*?)(?=^-- name: |\Z)", re.DOTALL | re.MULTILINE)


@cache
def queries() -> dict[str, str]:
    """Named blocks of queries.sql, parsed once (the leading comment lines stay: they document the query)."""
    source = resources.files("app.archive").joinpath("queries.sql").read_text(encoding="utf-8")
    return {match["name"]: match["body"].strip().rstrip(";") for match in _BLOCK.finditer(source)}


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: JobKind
    video_id: str
    variant: str | None
    attempts: int
    max_attempts: int
    deadline: datetime | None
    lease_token: uuid.UUID
    # The request that queued the job (for the worker's log lines); returned by the claim itself.
    request_id: str | None = None

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


@dataclass(frozen=True)
class JobRef:
    """A job touched by maintenance (rescued or expired)."""

    id: int
    kind: JobKind
    video_id: str
    variant: str | None
    state: JobState


@cache
def statement(name: str) -> TextClause:
    """A named query as a statement, built once: parsing its bind parameters on every call cost more than a
    webhook delivery's whole database round trip."""
    return text(queries()[name])


async def _run(session: AsyncSession, name: str, **params: object) -> list[dict[str, Any]]:
    """Every queue query returns rows (RETURNING or SELECT): an UPDATE that matched nothing returns none."""
    result = await session.execute(statement(name), params)
    return [dict(row) for row in result.mappings()]


async def _run_alone(database: Database, name: str, **params: object) -> list[asyncpg.Record]:
    """A query whole on its own and harmless twice, run alone on the driver (`Database.fetch_alone`, decision 012)."""
    return await database.fetch_alone(statement(name), params)


async def enqueue(
    session: AsyncSession,
    *,
    kind: JobKind,
    video_id: str,
    variant: str | None = None,
    deadline: datetime | None,
    max_attempts: int,
    delay_seconds: float = 0.0,
) -> int | None:
    """The new job's id, or None when an active job for the same (kind, video, variant) already exists."""
    rows = await _run(
        session,
        "enqueue",
        kind=kind.value,
        video_id=video_id,
        variant=variant,
        deadline=deadline,
        max_attempts=max_attempts,
        delay_seconds=delay_seconds,
    )
    return int(rows[0]["id"]) if rows else None


@dataclass(frozen=True)
class RecordedEvent:
    """A new webhook delivery as `record_video_event` stored it: its outcome, its video (for an orphan, the one its
    reference names, if any) and
    the sync job it queued (None unless enqueued, or when an active sync job of the video already existed)."""

    outcome: str
    video_id: str | None
    job_id: int | None


async def record_video_event(
    database: Database,
    *,
    webhook_id: str,
    event_id: str | None,
    event_type: str,
    profile: str,
    object_id: str,
    upstream_ids: Sequence[str],
    body: str,
    request_id: str | None,
    max_attempts: int,
    sync_horizon_seconds: float,
    referenced_video_id: str | None = None,
) -> RecordedEvent | None:
    """Record a delivery that names one video and queue its sync job, in one statement (decision 009); None for
    a duplicate (nothing written).

    Here, not in the webhooks repository, because the statement inserts an `archive_jobs` row, whose SQL is the
    queue's alone; its `webhook_events` half mirrors `WebhookRepository.record`. `request_id` lands on both rows
    explicitly, so the statement needs no stamped transaction: it runs alone on the driver (decision 012). A copy
    run again after a lost connection finds the first one's row and returns nothing, as a duplicate does.
    """
    rows = await _run_alone(
        database,
        "record_video_event",
        webhook_id=webhook_id,
        event_id=event_id,
        event_type=event_type,
        profile=profile,
        object_id=object_id,
        upstream_ids=list(upstream_ids),
        body=body,
        request_id=request_id,
        max_attempts=max_attempts,
        sync_horizon_seconds=sync_horizon_seconds,
        referenced_video_id=referenced_video_id,
    )
    if not rows:
        return None
    [row] = rows
    return RecordedEvent(
        outcome=str(row["outcome"]),
        video_id=row["video_id"],
        job_id=None if row["job_id"] is None else int(row["job_id"]),
    )


async def claim(session: AsyncSession, *, worker_id: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
    rows = await _run(session, "claim", worker_id=worker_id, limit=limit, lease_seconds=lease_seconds)
    return [
        ClaimedJob(
            id=row["id"],
            kind=JobKind(row["kind"]),
            video_id=row["video_id"],
            variant=row["variant"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            deadline=row["deadline"],
            lease_token=row["lease_token"],
            request_id=row["request_id"],
        )
        for row in rows
    ]


async def heartbeat(session: AsyncSession, job: ClaimedJob, *, lease_seconds: float) -> bool:
    """True while we still hold the lease."""
    return bool(await _run(session, "heartbeat", id=job.id, lease_token=job.lease_token, lease_seconds=lease_seconds))


# The channel idle workers LISTEN on, and `wake_workers` notifies (decision 014, app/archive/wakeup.py).
WAKE_CHANNEL = "vg_archive_jobs"


async def wake_workers(database: Database) -> None:
    """Tell the idle workers that work is queued: one NOTIFY, alone on the driver (harmless twice)."""
    await _run_alone(database, "wake_workers", channel=WAKE_CHANNEL)


async def start_download(database: Database, job: ClaimedJob, *, lease_seconds: float) -> bool:
    """Extend the lease of a download job we hold and mark its asset `downloading` (unless archived), in one
    statement alone on the driver; False when the lease was lost (nothing marked)."""
    rows = await _run_alone(
        database, "start_download", id=job.id, lease_token=job.lease_token, lease_seconds=lease_seconds
    )
    return bool(rows)


async def finish(session: AsyncSession, job: ClaimedJob, *, state: JobState, error: str | None = None) -> bool:
    if state in (JobState.QUEUED, JobState.RUNNING):
        raise ValueError(f"finish needs a terminal state, not {state}")
    return bool(await _run(session, "finish", id=job.id, lease_token=job.lease_token, state=state.value, error=error))


async def retry(session: AsyncSession, job: ClaimedJob, *, delay_seconds: float, error: str) -> bool:
    return bool(
        await _run(session, "retry", id=job.id, lease_token=job.lease_token, delay_seconds=delay_seconds, error=error)
    )


async def defer(session: AsyncSession, job: ClaimedJob, *, delay_seconds: float, reason: str) -> bool:
    """Run the job again after `delay_seconds`, the attempt it just made not counted (it found no capacity)."""
    return bool(
        await _run(session, "defer", id=job.id, lease_token=job.lease_token, delay_seconds=delay_seconds, reason=reason)
    )


async def wake_submit(session: AsyncSession, *, video_id: str) -> bool:
    """Bring the video's queued `submit` job forward to now; False when it has none waiting for later."""
    return bool(await _run(session, "wake_submit", video_id=video_id))


async def release(session: AsyncSession, job: ClaimedJob) -> bool:
    return bool(await _run(session, "release", id=job.id, lease_token=job.lease_token))


def _refs(rows: list[dict[str, Any]]) -> list[JobRef]:
    return [
        JobRef(
            id=row["id"],
            kind=JobKind(row["kind"]),
            video_id=row["video_id"],
            variant=row["variant"],
            state=JobState(row["state"]),
        )
        for row in rows
    ]


async def rescue_stalled(session: AsyncSession) -> list[JobRef]:
    return _refs(await _run(session, "rescue_stalled"))


async def expire_overdue(session: AsyncSession) -> list[JobRef]:
    return _refs(await _run(session, "expire_overdue"))


async def job_states(session: AsyncSession) -> dict[str, int]:
    return {str(row["state"]): int(row["jobs"]) for row in await _run(session, "job_states")}


async def next_due(session: AsyncSession) -> float | None:
    """Seconds until the earliest queued job may run, or None when nothing is queued."""
    [row] = await _run(session, "next_due")
    return None if row["seconds"] is None else float(row["seconds"])


async def oldest_queued_seconds(session: AsyncSession) -> float | None:
    [row] = await _run(session, "oldest_queued")
    return None if row["seconds"] is None else float(row["seconds"])


async def at_risk(session: AsyncSession, *, within_seconds: float, limit: int = 50) -> list[dict[str, Any]]:
    """Live download jobs whose deadline is near: the ones an operator must look at first."""
    return await _run(session, "at_risk", within_seconds=within_seconds, limit=limit)


@dataclass(frozen=True)
class JobHistory:
    """One job of a video as the console's timeline shows it."""

    id: int
    kind: str
    variant: str | None
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


async def jobs_of(session: AsyncSession, *, video_id: str) -> list[JobHistory]:
    """Every job of the video, whatever its state, oldest first."""
    return [JobHistory(**row) for row in await _run(session, "jobs_of_video", video_id=video_id)]


# ----- the pruner's statements (app/archive/pruner.py), on its pass's own connection ---------------


async def try_prune_lock(connection: AsyncConnection) -> bool:
    """Take the pruner's session-level lock on this connection; False when another worker holds it."""
    return bool((await connection.execute(statement("prune_lock"))).scalar_one())


async def prune_unlock(connection: AsyncConnection) -> None:
    await connection.execute(statement("prune_unlock"))


async def prune_batch(
    connection: AsyncConnection,
    table: str,
    *,
    keep_seconds: float,
    batch_size: int,
    lock_timeout: str,
    statement_timeout: str,
) -> int:
    """Delete one batch of `table`'s prunable rows in the connection's open transaction; the rows deleted.

    The transaction-local timeouts come first: the batch must never wait long for a lock, nor run long.
    """
    await connection.execute(
        statement("prune_timeouts"), {"lock_timeout": lock_timeout, "statement_timeout": statement_timeout}
    )
    params = {"keep_seconds": keep_seconds, "batch_size": batch_size}
    return int((await connection.execute(statement(f"prune_{table}"), params)).scalar_one())
