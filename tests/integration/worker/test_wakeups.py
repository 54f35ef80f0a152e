"""Idle workers are woken by the API's NOTIFY when a delivery queues work (decision 014, app/archive/wakeup.py),
long before their poll would find it; the sender coalesces, never fails a request, and the listener outlives a
lost connection.

The rows live in a database of this module's own: a worker here claims whatever is queued, and must find only
what these tests queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.exc import DisconnectionError

from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.wakeup import CHANNEL, WakeUpListener, WakeUps
from app.archive.worker import WAKE_UP_SPACING_SECONDS, Worker
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.upstream.router import UpstreamRouter
from tests.support import postgres
from tests.support.factories import make_video
from tests.support.settings import make_settings
from tests.support.webhooks import post, video_event
from tests.support.wire import on_the_wire
from tests.support.worker import worker_settings

# Far beyond what a test waits: a job found within a second was not found by the poll.
SLOW_POLL_SECONDS = 60.0
WOKEN_WITHIN_SECONDS = 5.0


WakeDb = postgres.MigratedDatabase


@pytest.fixture(scope="module")
def wake_db() -> Iterator[WakeDb]:
    with postgres.migrated_database("vg_wakeups") as made:
        yield made


@pytest.fixture
async def database(wake_db: WakeDb) -> AsyncIterator[Database]:
    connection = await asyncpg.connect(wake_db.dsn)
    try:
        await connection.execute("TRUNCATE archive_jobs, webhook_events, assets, videos, callers CASCADE")
    finally:
        await connection.close()
    database = Database.connect(make_settings(wake_db.url).db)
    yield database
    await database.dispose()


def settings_for(url: str, **worker: Any) -> Settings:
    settings = make_settings(url)
    polling_slowly = worker_settings(
        poll_interval_seconds=SLOW_POLL_SECONDS,
        reconcile_interval_seconds=3600,
        shutdown_grace_seconds=1,
        audit_batch_size=0,
        **worker,
    )
    return settings.model_copy(update={"worker": polling_slowly})


async def until(condition: Any, *, within: float, what: str) -> float:
    """Seconds until `await condition()` is true; fails after `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within} s: {what}")


async def claimed(dsn: str, video_id: str) -> bool:
    """The video's sync job has been claimed by a worker (it ran, or runs, at least once)."""
    connection = await asyncpg.connect(dsn)
    try:
        attempts = await connection.fetchval(
            "SELECT max(attempts) FROM archive_jobs WHERE video_id = $1 AND kind = 'sync'", video_id
        )
    finally:
        await connection.close()
    return bool(attempts)


@asynccontextmanager
async def idle_worker_and_api(
    settings: Settings, database: Database
) -> AsyncIterator[tuple[Worker, httpx.AsyncClient]]:
    """A worker running (polling slowly) past its first tick, and a client of the API beside it. Upstream answers
    every re-read with a 503: a sync job is claimed, run and retried later; its claim is what the tests watch."""
    upstreams = UpstreamRouter(settings, transport=httpx.MockTransport(lambda _: httpx.Response(503)))
    storage = ArchiveStorage(settings.s3)
    worker = Worker(JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage))
    app = create_app(settings)
    running = asyncio.create_task(worker.run())
    try:
        if settings.worker.wake_on_notify:
            await until(lambda: asyncio.sleep(0, worker.listening), within=10, what="the worker listens")
        # Its first tick (maintenance, the reconciler's first pass, a claim of nothing) is over: it waits on its poll.
        await asyncio.sleep(0.5)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
                yield worker, client
    finally:
        worker.request_stop()
        await running
        await upstreams.aclose()


async def deliver_completed(client: httpx.AsyncClient, database: Database) -> str:
    """A new video's `video.completed`, answered as a new delivery (its sync job queued); the video's id."""
    video = await make_video(database)
    assert video.upstream_id is not None
    response = await post(client, video_event(video.upstream_id))
    assert response.json() == {"received": True, "duplicate": False}, response.text
    return video.id


async def test_a_delivery_wakes_an_idle_worker_long_before_its_poll(wake_db: WakeDb, database: Database) -> None:
    async with idle_worker_and_api(settings_for(wake_db.url), database) as (_worker, client):
        video_id = await deliver_completed(client, database)
        woken = await until(lambda: claimed(wake_db.dsn, video_id), within=WOKEN_WITHIN_SECONDS, what="a claim")
    assert woken < WOKEN_WITHIN_SECONDS < SLOW_POLL_SECONDS


async def test_without_wake_ups_the_job_waits_for_the_poll(wake_db: WakeDb, database: Database) -> None:
    """The same delivery with `wake_on_notify` off: the API sends no NOTIFY and the idle worker does not move
    (the control for the test above)."""
    async with idle_worker_and_api(settings_for(wake_db.url, wake_on_notify=False), database) as (worker, client):
        video_id = await deliver_completed(client, database)
        await asyncio.sleep(2)
        assert not await claimed(wake_db.dsn, video_id)
        assert not worker.listening


async def test_the_sender_coalesces_a_burst_into_two_notifies(wake_db: WakeDb, database: Database) -> None:
    listener = await asyncpg.connect(wake_db.dsn)
    heard: list[float] = []
    await listener.add_listener(CHANNEL, lambda *_: heard.append(time.monotonic()))
    wake = WakeUps(database, coalesce_seconds=0.1)
    try:
        for _ in range(500):  # a burst of deliveries, each queuing a job
            wake.soon()
        await until(lambda: asyncio.sleep(0, len(heard) >= 2), within=5, what="two notifies")
        await asyncio.sleep(0.4)
        # One at once, one at the end of the spell for all the calls made during it.
        assert len(heard) == 2, heard
        assert heard[1] - heard[0] >= 0.1
        wake.soon()  # after the spell: at once again
        await until(lambda: asyncio.sleep(0, len(heard) == 3), within=5, what="a third notify")
    finally:
        await wake.aclose()
        await listener.close()


async def test_a_failed_notify_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    class DatabaseAway:
        async def fetch_alone(self, *_: object) -> list[object]:
            raise DisconnectionError("the database connection was lost twice under one statement")

    wake = WakeUps(DatabaseAway(), coalesce_seconds=0.01)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="app.archive.wakeup"):
        wake.soon()
        await asyncio.sleep(0.2)
    await wake.aclose()
    assert "could not wake the workers" in caplog.text


async def test_the_listener_comes_back_after_its_connection_is_killed(wake_db: WakeDb, database: Database) -> None:
    listener = WakeUpListener(database, reconnect_seconds=0.1)
    listening = asyncio.create_task(listener.run())
    other = await asyncpg.connect(wake_db.dsn)
    try:
        await until(lambda: asyncio.sleep(0, listener.connection is not None), within=10, what="listening")
        first = listener.connection
        assert first is not None
        killed_pid = first.get_server_pid()
        assert await other.fetchval("SELECT pg_terminate_backend($1)", killed_pid)
        await until(
            lambda: asyncio.sleep(
                0, listener.connection is not None and listener.connection.get_server_pid() != killed_pid
            ),
            within=10,
            what="listening again on a new connection",
        )
        listener.event.clear()
        await other.execute(f"NOTIFY {CHANNEL}")
        await asyncio.wait_for(listener.event.wait(), timeout=5)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await other.close()
    # Taken out of the pool for good: the pool has every connection it had to give.
    assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_storm_of_wake_ups_is_paced_to_one_claim_per_spacing(wake_db: WakeDb, database: Database) -> None:
    """Every idle worker hears every NOTIFY of every API process: a worker claims on them at most once per
    `WAKE_UP_SPACING_SECONDS`, so a fleet's empty claims do not grow with its API pods."""
    storm_seconds = 0.6
    notifier = await asyncpg.connect(wake_db.dsn)
    try:
        async with idle_worker_and_api(settings_for(wake_db.url), database) as (_worker, _client):
            with on_the_wire(database.engine) as (statements, _control):
                sent = 0
                started = time.monotonic()
                while time.monotonic() - started < storm_seconds:
                    await notifier.execute(f"NOTIFY {CHANNEL}")
                    sent += 1
                await asyncio.sleep(WAKE_UP_SPACING_SECONDS * 2)
            claims = [statement for statement in statements if "UPDATE archive_jobs AS job" in statement]
    finally:
        await notifier.close()
    assert sent > 100, sent  # far more wake-ups than the pacing lets through
    assert 1 <= len(claims) <= storm_seconds / WAKE_UP_SPACING_SECONDS + 3, (len(claims), sent)
