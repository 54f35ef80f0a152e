"""The pruner (app/archive/pruner.py): deletes only what is finished and old, in short batches, never in the
queue's way.

The rows live in a database of this module's own (the shared one stays small, and the counts here are exact).
The million-row test fills `archive_jobs` with one INSERT … SELECT generate_series, then runs a pruning pass
(in a thread of its own, as another worker process would) while a queue loop claims, heartbeats, retries and
finishes jobs with the queue's own SQL (app/archive/queue.py), and a sampler watches pg_locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from app.archive import pruner, queue
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core import metrics
from app.core.config import DatabaseSettings, RetentionSettings, S3Settings
from app.core.db import Database
from app.models import JobKind, JobState
from app.upstream.router import UpstreamRouter
from tests.support import postgres
from tests.support.settings import make_settings
from tests.support.worker import worker_settings

DAY = 86_400.0
OLD = 40 * DAY  # seconds ago: past a 30-day retention
NEW = 1 * DAY  # seconds ago: within it
TERMINAL = ("succeeded", "failed", "expired", "dead")
ACTIVE = ("queued", "running")
TABLES = ("archive_jobs", "webhook_events", "callback_attempts", "callback_deliveries", "videos", "callers")

MILLION = 1_000_000


PruneDb = postgres.MigratedDatabase


@pytest.fixture(scope="module")
def prune_db() -> Iterator[PruneDb]:
    with postgres.migrated_database("vg_pruner") as made:
        yield made


def connect(url: str, *, pool_size: int = 5) -> Database:
    return Database.connect(DatabaseSettings(url=url, pool_size=pool_size, max_overflow=5))


@pytest.fixture
async def pdb(prune_db: PruneDb) -> AsyncIterator[Database]:
    connection = await asyncpg.connect(prune_db.dsn)
    try:
        await connection.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    database = connect(prune_db.url)
    yield database
    await database.dispose()


def retention(**overrides: Any) -> RetentionSettings:
    values: dict[str, Any] = {"archive_jobs_days": 30, "webhook_events_days": 30, "callback_attempts_days": 30}
    return RetentionSettings(**{**values, **overrides})


async def sql(dsn: str, statement: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


async def make_videos(dsn: str, count: int) -> list[str]:
    """`count` settled (failed) video rows of one caller, which a running worker's reconciler leaves alone; returns
    their ids."""
    caller = uuid.uuid4()
    rows = await sql(
        dsn,
        """
        WITH caller AS (INSERT INTO callers (id, name) VALUES ($1, $2) RETURNING id)
        INSERT INTO videos (id, caller_id, model, size, seconds, prompt, status, progress)
        SELECT 'video_' || $2 || '_' || n, caller.id, 'sora-2', '720x1280', '4', 'p', 'failed', 100
        FROM caller, generate_series(1, $3::int) AS n
        RETURNING id
        """,
        caller,
        caller.hex[:12],
        count,
    )
    return [row["id"] for row in rows]


async def ids(dsn: str, table: str) -> set[int | uuid.UUID]:
    return {row["id"] for row in await sql(dsn, f"SELECT id FROM {table}")}


# ----- nothing unfinished is ever deleted -------------------------------------------------------------------


async def test_a_pass_deletes_exactly_the_finished_and_old_rows_of_each_table(pdb: Database, prune_db: PruneDb) -> None:
    dsn = prune_db.dsn
    videos = iter(await make_videos(dsn, 40))
    caller = (await sql(dsn, "SELECT id FROM callers"))[0]["id"]
    doomed: dict[str, set[Any]] = {"archive_jobs": set(), "webhook_events": set(), "callback_attempts": set()}

    # archive_jobs: every state, old and new. Active rows get an old finished_at too (no path sets one, but the
    # state alone must protect them); a terminal row without finished_at is never a candidate either.
    async def job(state: str, *, finished_ago: float | None, created_ago: float) -> int:
        [row] = await sql(
            dsn,
            """
            INSERT INTO archive_jobs (kind, video_id, state, attempts, max_attempts, run_after, created_at, updated_at,
                                      finished_at, lease_token, lease_until)
            VALUES ('sync', $1, $2::text, 1, 3, now() - make_interval(secs => $3), now() - make_interval(secs => $3),
                    now() - make_interval(secs => $3),
                    CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() - make_interval(secs => $4::float8) END,
                    CASE WHEN $2::text = 'running' THEN gen_random_uuid() END,
                    CASE WHEN $2::text = 'running' THEN now() + interval '1 hour' END)
            RETURNING id
            """,
            next(videos),
            state,
            created_ago,
            finished_ago,
        )
        return int(row["id"])

    for state in TERMINAL:
        doomed["archive_jobs"].add(await job(state, finished_ago=OLD, created_ago=OLD + DAY))
        await job(state, finished_ago=NEW, created_ago=OLD)  # created long ago, finished recently: kept
    await job("succeeded", finished_ago=None, created_ago=OLD)
    for state in ACTIVE:
        await job(state, finished_ago=None, created_ago=OLD)
        await job(state, finished_ago=OLD, created_ago=OLD)
        await job(state, finished_ago=None, created_ago=NEW)

    # webhook_events: every outcome, old and new; old orphans stay (the reconciler may still match them).
    for outcome in ("enqueued", "orphan", "ignored", "matched"):
        for ago in (OLD, NEW):
            [row] = await sql(
                dsn,
                """
                INSERT INTO webhook_events (id, webhook_id, event_type, upstream_profile, upstream_video_id, outcome,
                                            body, received_at)
                VALUES (gen_random_uuid(), $1, 'video.completed', 'default', $1, $2, '{}',
                        now() - make_interval(secs => $3))
                RETURNING id
                """,
                f"msg_{uuid.uuid4().hex}",
                outcome,
                ago,
            )
            if outcome != "orphan" and ago == OLD:
                doomed["webhook_events"].add(row["id"])

    # callback deliveries in every state, each with an old and a new attempt; only the attempts of a delivery that
    # finished long ago go (a delivery finished recently keeps its whole log, its old first attempt included).
    async def delivery(state: str, *, finished_ago: float | None) -> int:
        [row] = await sql(
            dsn,
            """
            INSERT INTO callback_deliveries (webhook_id, event_id, event_type, caller_id, video_id, url, payload, state,
                                             attempts, next_attempt_at, finished_at)
            VALUES ($1, $1, 'video.completed', $2, $3, 'https://example.test/hook', '{}', $4, 2, now(),
                    CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() - make_interval(secs => $5::float8) END)
            RETURNING id
            """,
            f"msg_{uuid.uuid4().hex}",
            caller,
            next(videos),
            state,
            finished_ago,
        )
        return int(row["id"])

    async def attempts(delivery_id: int, *agos: float) -> list[int]:
        made = []
        for number, ago in enumerate(agos, start=1):
            [row] = await sql(
                dsn,
                """
                INSERT INTO callback_attempts (delivery_id, attempt, attempted_at, outcome)
                VALUES ($1, $2, now() - make_interval(secs => $3), 'http_error') RETURNING id
                """,
                delivery_id,
                number,
                ago,
            )
            made.append(int(row["id"]))
        return made

    for state in ("delivered", "failed", "cancelled"):
        doomed["callback_attempts"].update(await attempts(await delivery(state, finished_ago=OLD), OLD + 1, OLD))
        await attempts(await delivery(state, finished_ago=NEW), OLD, NEW)
    await attempts(await delivery("pending", finished_ago=None), OLD + 2, OLD + 1, OLD)
    # A failed delivery an operator sent again (`retry_now`): pending once more, its old log kept.
    await attempts(await delivery("pending", finished_ago=None), OLD)

    before = {table: await ids(dsn, table) for table in doomed}
    deliveries_before = await ids(dsn, "callback_deliveries")
    # Kept for 60 days, nothing here is old enough yet.
    longer = await pruner.prune_once(
        pdb, retention(archive_jobs_days=60, webhook_events_days=60, callback_attempts_days=60)
    )
    assert longer is not None and longer.total == 0
    # A small batch size: the pass takes several batches per table, and still stops at exactly these rows.
    report = await pruner.prune_once(pdb, retention(batch_size=2))

    assert report is not None
    for table, expected in doomed.items():
        assert expected, table
        assert before[table] - await ids(dsn, table) == expected, table
        assert report.deleted[table] == len(expected), table
        assert report.batches[table] == len(expected) // 2 + 1, table
    assert await ids(dsn, "callback_deliveries") == deliveries_before  # the outbox is never pruned
    assert report.backlog == [] and report.interrupted == {}

    # A second pass finds nothing more.
    again = await pruner.prune_once(pdb, retention(batch_size=2))
    assert again is not None and again.total == 0


# ----- batches ----------------------------------------------------------------------------------------------


async def old_finished_jobs(dsn: str, count: int) -> None:
    [video] = await make_videos(dsn, 1)
    await sql(
        dsn,
        """
        INSERT INTO archive_jobs (kind, video_id, state, attempts, max_attempts, run_after, finished_at)
        SELECT 'sync', $1, 'succeeded', 1, 3, now() - interval '41 days',
               now() - interval '40 days' - make_interval(secs => n)
        FROM generate_series(1, $2::int) AS n
        """,
        video,
        count,
    )


@pytest.mark.parametrize(
    ("rows", "batch_size", "transactions"),
    [(2500, 1000, 3), (3000, 1000, 4), (999, 1000, 1)],
    ids=["partial-last-batch", "exact-multiple-then-an-empty-batch", "one-batch"],
)
async def test_each_batch_is_its_own_transaction(
    pdb: Database, prune_db: PruneDb, rows: int, batch_size: int, transactions: int
) -> None:
    """M old rows in batches of N: ceil(M/N) transactions (one more, empty, when N divides M), each committed
    on its own; counted by the engine's commits (besides the lock's and the unlock's)."""
    await old_finished_jobs(prune_db.dsn, rows)
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(pdb.engine.sync_engine, "commit", count)
    try:
        report = await pruner.prune_once(pdb, retention(batch_size=batch_size))
    finally:
        event.remove(pdb.engine.sync_engine, "commit", count)
    assert report is not None
    assert report.deleted["archive_jobs"] == rows
    assert report.batches["archive_jobs"] == transactions == math.ceil(rows / batch_size) + (rows % batch_size == 0)
    assert commits == sum(report.batches.values()) + 2
    assert await ids(prune_db.dsn, "archive_jobs") == set()


async def test_a_pass_stops_at_its_cap_and_the_next_goes_on(pdb: Database, prune_db: PruneDb) -> None:
    await old_finished_jobs(prune_db.dsn, 2500)
    settings = retention(batch_size=500, max_batches_per_pass=3)
    first = await pruner.prune_once(pdb, settings)
    assert first is not None and first.deleted["archive_jobs"] == 1500 and first.backlog == ["archive_jobs"]
    second = await pruner.prune_once(pdb, settings)
    # 500, 500, then an empty batch: done within the cap.
    assert second is not None and second.deleted["archive_jobs"] == 1000 and second.backlog == []
    assert second.batches["archive_jobs"] == 3


async def test_each_pass_counts_what_it_deleted_in_the_metric(pdb: Database, prune_db: PruneDb) -> None:
    counter = metrics.PRUNED_ROWS.labels(table="archive_jobs")
    before = counter._value.get()
    await old_finished_jobs(prune_db.dsn, 1200)
    report = await pruner.prune_once(pdb, retention(batch_size=500))
    assert report is not None and report.deleted["archive_jobs"] == 1200
    assert counter._value.get() - before == 1200


async def test_one_worker_prunes_at_a_time(pdb: Database, prune_db: PruneDb) -> None:
    await old_finished_jobs(prune_db.dsn, 10)
    holder = await asyncpg.connect(prune_db.dsn)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock(hashtextextended('vg-pruner', 0))")
        assert await pruner.prune_once(pdb, retention()) is None  # another "worker" holds the lock: skipped
        assert len(await ids(prune_db.dsn, "archive_jobs")) == 10
    finally:
        await holder.close()
    report = await pruner.prune_once(pdb, retention())
    assert report is not None and report.deleted["archive_jobs"] == 10
    # The pass released its lock: anyone may take it now.
    [row] = await sql(prune_db.dsn, "SELECT pg_try_advisory_lock(hashtextextended('vg-pruner', 0)) AS locked")
    assert row["locked"]


async def test_a_batch_never_waits_for_a_lock(pdb: Database, prune_db: PruneDb) -> None:
    """Behind a table lock (DDL, VACUUM FULL) a batch gives up at its lock_timeout instead of queueing every later
    locker behind it; the rest of the pass goes on and the next pass tries again."""
    await old_finished_jobs(prune_db.dsn, 10)
    blocker = await asyncpg.connect(prune_db.dsn)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE archive_jobs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        report = await pruner.prune_once(pdb, retention())
        waited = time.monotonic() - started
        await transaction.rollback()
    finally:
        await blocker.close()
    assert report is not None
    assert "archive_jobs" in report.interrupted and "55P03" in report.interrupted["archive_jobs"]
    assert report.deleted["archive_jobs"] == 0
    assert waited < 2.0
    after = await pruner.prune_once(pdb, retention())
    assert after is not None and after.deleted["archive_jobs"] == 10


async def test_a_pass_cut_short_leaves_the_lock_free(pdb: Database, prune_db: PruneDb) -> None:
    """A worker shutting down cancels its pass mid-batch: the batch rolls back, and the lock does not outlive the
    pass on a pooled connection (which would stop every later pass of every worker)."""
    await old_finished_jobs(prune_db.dsn, 20_000)
    task = asyncio.create_task(pruner.prune_once(pdb, retention(batch_size=10, max_batches_per_pass=10_000)))
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = await sql(prune_db.dsn, "SELECT pg_try_advisory_lock(hashtextextended('vg-pruner', 0)) AS locked")
    assert row["locked"]
    report = await pruner.prune_once(pdb, retention())
    assert report is not None and 0 < report.deleted["archive_jobs"] < 20_000  # the rest, in the next pass


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
async def test_the_worker_prunes_every_interval(
    pdb: Database, prune_db: PruneDb, s3_settings: S3Settings, caplog: pytest.LogCaptureFixture, enabled: bool
) -> None:
    await old_finished_jobs(prune_db.dsn, 30)
    settings = make_settings(prune_db.url).model_copy(
        update={
            "s3": s3_settings,
            "worker": worker_settings(audit_batch_size=0),
            "retention": retention(enabled=enabled, interval_seconds=0.2, batch_size=7),
        }
    )
    upstreams = UpstreamRouter(settings)
    storage = ArchiveStorage(s3_settings)
    await storage.ensure_bucket()
    worker = Worker(JobContext(settings=settings, database=pdb, upstreams=upstreams, storage=storage), worker_id="w")

    async def jobs_left(expected: int) -> int:
        deadline = time.monotonic() + 10
        while True:
            [row] = await sql(
                prune_db.dsn, "SELECT count(*) AS n FROM archive_jobs WHERE finished_at < now() - interval '30 days'"
            )
            if row["n"] == expected or time.monotonic() > deadline:
                return int(row["n"])
            await asyncio.sleep(0.1)

    running = asyncio.create_task(worker.run())
    try:
        with caplog.at_level(logging.INFO, logger="app.archive.pruner"):
            if enabled:
                assert await jobs_left(0) == 0
                # Rows that became old after a pass go at a later one.
                await old_finished_jobs(prune_db.dsn, 5)
                assert await jobs_left(0) == 0
                assert any("pruner: deleted 30 archive_jobs" in record.getMessage() for record in caplog.records)
            else:
                await asyncio.sleep(1.0)
                assert await jobs_left(30) == 30
                assert not [record for record in caplog.records if record.name == "app.archive.pruner"]
    finally:
        worker.request_stop()
        await running
        await upstreams.aclose()
        storage.close()


# ----- a million rows: the queue never waits on the pruner --------------------------------------------------


# A queue operation that waits this long for any lock fails (the server counts the wait: no client-side noise).
QUEUE_LOCK_TIMEOUT = "20ms"
P99_BOUND = 0.050
MAX_BOUND = 0.200


@dataclass
class Timings:
    """Each queue operation's seconds, by operation; (seconds, operation, ended at) of the five slowest, and of
    every one slower than MAX_BOUND."""

    by_op: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    slowest: list[tuple[float, str, float]] = field(default_factory=list)
    over: list[tuple[float, str, float]] = field(default_factory=list)

    def add(self, op: str, seconds: float) -> None:
        self.by_op.setdefault(op, []).append(seconds)
        entry = (seconds, op, time.monotonic())
        self.slowest = sorted([*self.slowest, entry], reverse=True)[:5]
        if seconds > MAX_BOUND:
            self.over.append(entry)

    def all(self) -> list[float]:
        return [value for values in self.by_op.values() for value in values]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


@dataclass
class LoopLag:
    """Stalls of this test's own event loop (a 5 ms ticker woken late): when the machine does not schedule the
    test process, every operation it times looks slow, whatever the database did. (ended at, seconds late)."""

    stalls: list[tuple[float, float]] = field(default_factory=list)

    def overlaps(self, started: float, ended: float, *, at_least: float) -> bool:
        return any(late >= at_least and end > started and end - late < ended for end, late in self.stalls)


async def watch_loop_lag(stop: asyncio.Event, lag: LoopLag) -> None:
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.005)
        late = time.monotonic() - before - 0.005
        if late > 0.02:
            lag.stalls.append((time.monotonic(), late))


async def queue_loop(database: Database, stop: asyncio.Event, timings: Timings, *, worker_id: str) -> None:
    """What a worker does to the queue, as fast as it can: claim, heartbeat, then retry or finish-and-requeue.
    Each operation is one transaction, timed from begin to commit, under a lock_timeout."""

    async def timed(op: str, work: Any) -> Any:
        started = time.perf_counter()
        try:
            async with database.sessionmaker.begin() as session:
                await session.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": QUEUE_LOCK_TIMEOUT})
                result = await work(session)
        except Exception as error:
            timings.errors.append(f"{op}: {type(error).__name__}: {error}")
            raise
        timings.add(op, time.perf_counter() - started)
        return result

    turn = 0
    while not stop.is_set():
        jobs = await timed("claim", lambda s: queue.claim(s, worker_id=worker_id, limit=4, lease_seconds=60))
        if not jobs:
            await asyncio.sleep(0.005)
            continue
        for job in jobs:
            turn += 1
            await timed("heartbeat", lambda s, j=job: queue.heartbeat(s, j, lease_seconds=60))
            if turn % 2:
                assert await timed("retry", lambda s, j=job: queue.retry(s, j, delay_seconds=0, error="again"))
            else:
                assert await timed("finish", lambda s, j=job: queue.finish(s, j, state=JobState.SUCCEEDED))
                await timed(
                    "enqueue",
                    lambda s, j=job: queue.enqueue(
                        s, kind=JobKind.SYNC, video_id=j.video_id, deadline=None, max_attempts=1_000_000
                    ),
                )


@dataclass
class LockWatch:
    samples: int = 0
    pruner_seen: int = 0
    # (waiting pid, what it waited for) whenever a backend waited on a lock the pruner held.
    blocked_by_pruner: list[str] = field(default_factory=list)
    pruner_waited: list[str] = field(default_factory=list)
    # Sentinel queued/running rows that could not be locked at once (someone else held them).
    sentinel_locked: list[str] = field(default_factory=list)


async def watch_locks(dsn: str, sentinels: list[int], stop: asyncio.Event, watch: LockWatch) -> None:
    """Sample pg_locks: the pruner is the backend holding the session advisory lock; no backend may wait on a lock
    it holds, it must never wait itself, and the sentinel live rows (no one else touches them) must stay lockable
    with NOWAIT: the pruner never holds a row lock on a queued or running job."""
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            watch.samples += 1
            pruner_pids = {
                row["pid"]
                for row in await connection.fetch(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            }
            if pruner_pids:
                watch.pruner_seen += 1
                waiting = await connection.fetch(
                    "SELECT pid, pg_blocking_pids(pid) AS blockers, wait_event, left(query, 60) AS query "
                    "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                for row in waiting:
                    if set(row["blockers"]) & pruner_pids:
                        watch.blocked_by_pruner.append(f"{row['pid']} {row['wait_event']} {row['query']}")
                    if row["pid"] in pruner_pids:
                        watch.pruner_waited.append(f"{row['wait_event']} {row['query']}")
            try:
                async with connection.transaction():
                    await connection.execute(
                        "SELECT id FROM archive_jobs WHERE id = ANY($1::bigint[]) FOR UPDATE NOWAIT", sentinels
                    )
            except asyncpg.LockNotAvailableError as error:
                watch.sentinel_locked.append(str(error))
            await asyncio.sleep(0.005)
    finally:
        await connection.close()


async def fill_a_million(dsn: str, *, live: int, sentinels: int) -> tuple[list[int], float]:
    """1,000,000 succeeded jobs finished 31-42 days ago (one INSERT … SELECT), `live` runnable queued jobs for
    the queue loop, and `sentinels` queued (not yet due) and running jobs nobody touches; returns the
    sentinels' ids and the seconds the fill took."""
    started = time.monotonic()
    videos = await make_videos(dsn, live + 2 * sentinels + 1)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """
            INSERT INTO archive_jobs (kind, video_id, state, attempts, max_attempts, run_after, created_at, updated_at,
                                      finished_at)
            SELECT 'sync', $1, 'succeeded', 1, 3, now() - interval '43 days', now() - interval '43 days',
                   now() - interval '31 days' - make_interval(secs => n),
                   now() - interval '31 days' - make_interval(secs => n)
            FROM generate_series(1, $2::int) AS n
            """,
            videos[0],
            MILLION,
        )
        await connection.execute(
            """
            INSERT INTO archive_jobs (kind, video_id, state, attempts, max_attempts, run_after, created_at, updated_at)
            SELECT 'sync', v, 'queued', 0, 1000000, now() - interval '50 days', now() - interval '50 days',
                   now() - interval '50 days'
            FROM unnest($1::text[]) AS v
            """,
            videos[1 : 1 + live],
        )
        rows = await connection.fetch(
            """
            INSERT INTO archive_jobs (kind, video_id, state, attempts, max_attempts, run_after, created_at, updated_at,
                                      lease_token, lease_until, worker_id)
            SELECT 'sync', v, CASE WHEN n % 2 = 0 THEN 'queued' ELSE 'running' END, 1, 3,
                   CASE WHEN n % 2 = 0 THEN now() + interval '1 day' ELSE now() - interval '50 days' END,
                   now() - interval '50 days', now() - interval '50 days',
                   CASE WHEN n % 2 = 1 THEN gen_random_uuid() END,
                   CASE WHEN n % 2 = 1 THEN now() + interval '1 day' END,
                   CASE WHEN n % 2 = 1 THEN 'sentinel' END
            FROM unnest($1::text[]) WITH ORDINALITY AS t(v, n)
            RETURNING id
            """,
            videos[1 + live :],
        )
        await connection.execute("ANALYZE archive_jobs")
    finally:
        await connection.close()
    return [row["id"] for row in rows], time.monotonic() - started


def prune_in_a_thread(url: str, settings: RetentionSettings) -> tuple[threading.Thread, dict[str, Any]]:
    """The pruning pass on its own event loop and engine, as another worker process would run it."""
    outcome: dict[str, Any] = {}

    async def run() -> None:
        database = connect(url, pool_size=1)
        try:
            outcome["started"] = started = time.monotonic()
            outcome["report"] = await pruner.prune_once(database, settings)
            outcome["seconds"] = time.monotonic() - started
        except Exception as error:
            outcome["error"] = error
        finally:
            await database.dispose()

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="pruner")
    return thread, outcome


@pytest.mark.timeout(240)
async def test_a_pass_over_a_million_rows_never_blocks_the_queue(prune_db: PruneDb, pdb: Database) -> None:
    sentinels, fill_seconds = await fill_a_million(prune_db.dsn, live=200, sentinels=100)
    [plan] = await sql(
        prune_db.dsn,
        "EXPLAIN (FORMAT JSON) "
        + queue.queries()["prune_archive_jobs"].replace(":keep_seconds", "2592000.0").replace(":batch_size", "1000"),
    )
    assert "ix_archive_jobs_prunable" in plan[0] and "Seq Scan" not in plan[0], plan[0]

    queue_db = connect(prune_db.url)
    baseline, during = Timings(), Timings()
    watch = LockWatch()
    lag = LoopLag()
    try:
        # The queue alone first: what its operations cost on this machine right now, for comparison.
        stop = asyncio.Event()
        loop_task = asyncio.create_task(queue_loop(queue_db, stop, baseline, worker_id="baseline"))
        await asyncio.sleep(3)
        stop.set()
        await loop_task

        # Then a pruning pass in batches of 1,000 (the default) that deletes the whole million (the default cap
        # of 100 batches per pass would stop at 100,000), the queue loop and the lock sampler running all along.
        stop = asyncio.Event()
        loop_task = asyncio.create_task(queue_loop(queue_db, stop, during, worker_id="during"))
        watch_task = asyncio.create_task(watch_locks(prune_db.dsn, sentinels, stop, watch))
        lag_task = asyncio.create_task(watch_loop_lag(stop, lag))
        await asyncio.sleep(0.5)
        settings = retention(batch_size=1000, max_batches_per_pass=2000)
        thread, outcome = prune_in_a_thread(prune_db.url, settings)
        thread.start()
        await asyncio.to_thread(thread.join, 180)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(loop_task, watch_task, lag_task)
    finally:
        await queue_db.dispose()

    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert report is not None
    left = await sql(prune_db.dsn, "SELECT state, count(*) AS n FROM archive_jobs GROUP BY state")
    counts = {row["state"]: row["n"] for row in left}
    figures = {
        "rows": MILLION,
        "fill_seconds": round(fill_seconds, 1),
        "pass_seconds": round(outcome["seconds"], 2),
        "deleted": report.deleted["archive_jobs"],
        "batches": report.batches["archive_jobs"],
        "ms_per_batch": round(outcome["seconds"] / max(report.batches["archive_jobs"], 1) * 1000, 1),
        "longest_batch_ms": round(report.longest_batch_seconds * 1000, 1),
        "queue_alone": {op: summary(values) for op, values in baseline.by_op.items()}
        | {"all": summary(baseline.all())},
        "queue_during_pass": {op: summary(values) for op, values in during.by_op.items()}
        | {"all": summary(during.all())},
        "lock_samples": watch.samples,
        "samples_with_pruner_holding_its_lock": watch.pruner_seen,
        "jobs_left": counts,
        # The slowest queue operations, and when they ended (seconds after the pass began).
        "slowest_during": [
            f"{op} {seconds * 1000:.1f} ms at {at - outcome['started']:+.2f} s" for seconds, op, at in during.slowest
        ],
        "test_loop_stalls_over_20ms": len(lag.stalls),
        "longest_test_loop_stall_ms": round(max((late for _, late in lag.stalls), default=0.0) * 1000, 1),
    }
    sys.stderr.write(f"\npruner million-row figures: {json.dumps(figures)}\n")

    # The pass deleted the whole million (1,000 full batches, then an empty one), and nothing live.
    assert report.deleted["archive_jobs"] == MILLION and report.batches["archive_jobs"] == MILLION // 1000 + 1
    assert report.backlog == [] and report.interrupted == {}
    # What is left: the live jobs, and those the queue loop finished (too new to prune).
    assert counts["succeeded"] == len(baseline.by_op.get("finish", [])) + len(during.by_op.get("finish", []))
    assert set(counts) <= {"queued", "running", "succeeded"}
    assert counts["queued"] + counts["running"] == 200 + len(sentinels)
    # The pruner never held a lock anyone waited for, never waited itself, never held a live row.
    assert watch.pruner_seen > 10, watch
    assert watch.blocked_by_pruner == [] and watch.pruner_waited == [] and watch.sentinel_locked == []
    # No queue operation waited 20 ms for a lock (the server would have cancelled it at its lock_timeout).
    assert during.errors == []
    # And the queue's operations stayed fast, timed here from begin to commit. The bounds are loose on purpose:
    # this machine is shared (2 cores, often a whole suite besides), and a pass adds CPU and WAL work of its own.
    # An operation above the max bound is accepted only if this process itself was not scheduled meanwhile (its
    # event loop stalled as long): client-side noise, which no lock of the pruner's can cause.
    latencies = during.all()
    assert len(latencies) > 200
    assert percentile(latencies, 0.99) < P99_BOUND, figures
    for seconds, op, ended in during.over:
        assert lag.overlaps(ended - seconds, ended, at_least=seconds - MAX_BOUND), (op, seconds, figures)
