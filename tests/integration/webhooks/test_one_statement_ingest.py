"""The receiver's common case in one statement (decision 009), run alone on the driver (decision 012): what it
costs in round trips, and the guarantees the statement must keep (the deadline, the request id, once per delivery
and per event, atomicity).

Round trips are counted at the driver: each asyncpg connection's protocol is wrapped, so every message exchange
(a simple query such as BEGIN or COMMIT, a prepare, an execute) is seen, not only what SQLAlchemy calls a cursor
execute (asyncpg's BEGIN and COMMIT are not).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import service as archive_service
from app.archive.service import sync_deadline
from app.core.access_log import AccessLog
from app.core.config import Settings, WorkerSettings
from app.core.resources import resources_of
from app.models import EventOutcome
from app.webhooks import service as webhook_service
from app.webhooks.schemas import DeliveredEvent
from tests.support.factories import make_video
from tests.support.webhooks import Db, build_receiver_app, client_of, post, running, signed_delivery, video_event

# The protocol's coroutines that each make one round trip to the server (a message and its answer).
ROUND_TRIPS = frozenset({"query", "prepare", "bind_execute", "bind_execute_many", "bind", "execute", "close_statement"})


# The workers' wake-up (decision 014): a NOTIFY sent after the answer, coalesced across deliveries and on whichever
# connection the pool hands it, so not one delivery's round trip; it is counted in tests/integration/worker/
# test_wakeups.py. Left out of the log, or it lands in whichever delivery's window it happens to be sent in.
WAKE_UP = "pg_notify"


class CountingProtocol:
    """An asyncpg protocol seen through: every round trip is logged as (method, SQL or statement name)."""

    def __init__(self, inner: Any, log: list[tuple[str, str]]) -> None:
        self._inner = inner
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in ROUND_TRIPS:
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            # The SQL: a prepared statement's, a simple query's text, or a prepare's (after the statement's name).
            # asyncpg's own calls name the prepared statement `state=`; SQLAlchemy's pass it first.
            prepared: Any = kwargs.get("state", args[0] if args else None)
            if hasattr(prepared, "query"):
                what = str(prepared.query)
            else:
                what = max((arg for arg in args if isinstance(arg, str)), key=len, default="")
            if WAKE_UP not in what:
                self._log.append((name, " ".join(what.split())))
            return await attribute(*args, **kwargs)

        return counted


@asynccontextmanager
async def counted_receiver(settings: Settings) -> AsyncIterator[tuple[FastAPI, list[tuple[str, str]]]]:
    """A receiver app whose database connections log their round trips once checked out of the pool.

    From checkout on: the pool's own liveness check on checkout (pre-ping, when configured) is the pool's
    business, not the delivery's, and runs before the checkout event."""
    log: list[tuple[str, str]] = []
    app = build_receiver_app(settings)
    app.add_middleware(AccessLog)
    async with running(app):
        engine = resources_of(app).database.engine

        def wrap(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            connection = dbapi_connection.driver_connection
            if not isinstance(connection._protocol, CountingProtocol):
                connection._protocol = CountingProtocol(connection._protocol, log)

        event.listen(engine.sync_engine, "checkout", wrap)
        yield app, log


def delivered(webhook_id: str, object_id: str, type_: str = "video.completed", **extra: Any) -> DeliveredEvent:
    """A verified event about `object_id`, as the service receives it."""
    return DeliveredEvent(webhook_id=webhook_id, event_id=None, type=type_, object_id=object_id, body="{}", **extra)


async def receive(db: Db, event_: DeliveredEvent, **kwargs: Any) -> webhook_service.Receipt:
    return await webhook_service.receive(db.database, event=event_, worker=WorkerSettings(), **kwargs)


class TestRoundTrips:
    async def test_a_delivery_naming_a_video_is_one_round_trip_without_begin_or_commit(
        self, receiver_settings: Settings, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        async with counted_receiver(receiver_settings) as (app, log), client_of(app) as client:
            # The first statement on a connection is prepared once (asyncpg's statement cache); then one each.
            assert (await post(client, video_event("video_warm_up"))).status_code == 200
            log.clear()
            assert (await post(client, video_event(video.upstream_id))).status_code == 200
            new = list(log)
            log.clear()
            assert (await post(client, video_event(video.upstream_id))).status_code == 200  # a new event: no job
            another = list(log)
        assert [method for method, _ in new] == ["bind_execute"], new
        assert "INSERT INTO webhook_events" in new[0][1] and "INSERT INTO archive_jobs" in new[0][1]
        assert [method for method, _ in another] == ["bind_execute"], another
        assert len(await db.jobs(video.id)) == 1

    async def test_a_duplicate_is_one_round_trip(self, receiver_settings: Settings, db: Db) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        async with counted_receiver(receiver_settings) as (app, log), client_of(app) as client:
            assert (await post(client, delivery)).json()["duplicate"] is False
            log.clear()
            assert (await post(client, delivery.resigned())).json()["duplicate"] is True
            duplicate = list(log)
        assert [method for method, _ in duplicate] == ["bind_execute"], duplicate

    async def test_the_connection_is_transactional_again_for_the_next_request(
        self, receiver_settings: Settings
    ) -> None:
        """Autocommit is the delivery's alone: the pool hands the connection back in its usual mode, so the next
        session on it (here an ignored event type, which keeps the transactional path) begins and commits."""
        async with counted_receiver(receiver_settings) as (app, log), client_of(app) as client:
            assert (await post(client, video_event("video_before_ignored"))).status_code == 200
            log.clear()
            assert (await post(client, video_event("video_x", "batch.completed"))).status_code == 200
            ignored = [what.rstrip(";").split()[0].upper() for method, what in log if method == "query"]
        assert ignored == ["BEGIN", "COMMIT"], log


class TestTheStatementKeepsTheGuarantees:
    @pytest.mark.parametrize("horizon", [6 * 3600.0, 1234.567891])
    async def test_the_jobs_deadline_is_sync_deadline(self, db: Db, horizon: float) -> None:
        """The SQL's `created_at + make_interval(secs => horizon)` is `sync_deadline(video, settings)`."""
        created = datetime.now(UTC) - timedelta(minutes=7, microseconds=123457)
        video = await make_video(db.database, status="in_progress", created_at=created)
        assert video.upstream_id is not None
        worker = WorkerSettings(sync_horizon_seconds=horizon)
        event_ = DeliveredEvent(
            webhook_id=f"wh_deadline_{video.id}",
            event_id=None,
            type="video.completed",
            object_id=video.upstream_id,
            body="{}",
        )
        receipt = await webhook_service.receive(db.database, event=event_, worker=worker)
        assert receipt.outcome is EventOutcome.ENQUEUED
        [job] = await db.jobs(video.id)
        assert job.deadline == sync_deadline(video, worker)
        assert job.max_attempts == worker.max_attempts
        assert (job.kind, job.state, job.variant, job.attempts) == ("sync", "queued", None, 0)

    async def test_the_request_id_reaches_both_rows(self, receiver_settings: Settings, db: Db) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        orphan = video_event("video_orphan_with_request_id")
        async with counted_receiver(receiver_settings) as (app, _), client_of(app) as client:
            headers = {**delivery.headers, "x-request-id": "req-one-statement-1"}
            response = await client.post("/webhooks/openai", content=delivery.body, headers=headers)
            assert response.status_code == 200
            headers = {**orphan.headers, "x-request-id": "req-one-statement-2"}
            assert (await client.post("/webhooks/openai", content=orphan.body, headers=headers)).status_code == 200
        [row] = await db.events(webhook_id=delivery.webhook_id)
        [job] = await db.jobs(video.id)
        assert (row.request_id, job.request_id) == ("req-one-statement-1", "req-one-statement-1")
        [orphan_row] = await db.events(webhook_id=orphan.webhook_id)
        assert (orphan_row.outcome, orphan_row.request_id) == (EventOutcome.ORPHAN.value, "req-one-statement-2")

    async def test_without_a_request_id_both_rows_have_none(self, db: Db) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        event_ = delivered(f"wh_no_request_{video.id}", video.upstream_id)
        await receive(db, event_)
        [row] = await db.events(webhook_id=event_.webhook_id)
        [job] = await db.jobs(video.id)
        assert (row.request_id, job.request_id) == (None, None)

    async def test_the_video_is_found_by_any_of_its_ids_and_the_oldest_wins(self, db: Db) -> None:
        """As the receiver always looked videos up: any of the forms the object may take, in this profile only, the
        oldest first; the row keeps the video's own upstream id (fal's events name only part of it)."""
        old = await make_video(
            db.database, status="in_progress", upstream_id="req:shared-old", created_at=datetime.now(UTC) - timedelta(1)
        )
        await make_video(db.database, status="in_progress", upstream_id="req:shared-new")
        await make_video(db.database, status="in_progress", upstream_id="shared-other", profile="elsewhere")
        event_ = delivered(f"wh_forms_{old.id}", "shared")
        receipt = await receive(db, event_, upstream_ids=["shared-other", "req:shared-new", "req:shared-old"])
        assert receipt.outcome is EventOutcome.ENQUEUED
        [row] = await db.events(webhook_id=event_.webhook_id)
        assert (row.video_id, row.upstream_video_id) == (old.id, "req:shared-old")
        assert len(await db.jobs(old.id)) == 1

    async def test_an_orphan_keeps_the_video_its_reference_names_and_a_known_video_is_never_overridden(
        self, db: Db
    ) -> None:
        """The reference in a callback URL (app/upstream/reference.py) is kept on an orphan only, for the
        reconciler's adoption of a cut-off create; a delivery for a video we know is applied to that video."""
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        orphan = delivered(f"wh_ref_orphan_{video.id}", f"task-{uuid.uuid4().hex}", referenced_video_id=video.id)
        assert (await receive(db, orphan)).outcome is EventOutcome.ORPHAN
        known = delivered(f"wh_ref_known_{video.id}", video.upstream_id, referenced_video_id="video_someone_else")
        assert (await receive(db, known)).outcome is EventOutcome.ENQUEUED
        [orphan_row] = await db.events(webhook_id=orphan.webhook_id)
        [known_row] = await db.events(webhook_id=known.webhook_id)
        assert (orphan_row.outcome, orphan_row.video_id) == ("orphan", video.id)
        assert (known_row.outcome, known_row.video_id) == ("enqueued", video.id)
        assert len(await db.jobs(video.id)) == 1  # the orphan queued nothing


class TestConcurrentCopies:
    async def test_one_event_under_ten_webhook_ids_at_once_is_recorded_and_acted_on_once(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        first = video_event(video.upstream_id)
        copies = [first, *(signed_delivery(first.body, event_id=first.event_id) for _ in range(9))]
        answers = await asyncio.gather(*(post(client, copy) for copy in copies))
        assert [answer.status_code for answer in answers] == [200] * 10
        assert [answer.json()["duplicate"] for answer in answers].count(False) == 1
        assert len(await db.events(event_id=first.event_id)) == 1
        assert len(await db.jobs(video.id)) == 1

    async def test_ten_different_events_for_one_video_at_once_queue_one_live_job(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        deliveries = [video_event(video.upstream_id) for _ in range(10)]
        answers = await asyncio.gather(*(post(client, delivery) for delivery in deliveries))
        assert [answer.json()["duplicate"] for answer in answers] == [False] * 10
        for delivery in deliveries:
            [row] = await db.events(webhook_id=delivery.webhook_id)
            assert row.outcome == EventOutcome.ENQUEUED.value
        assert len(await db.jobs(video.id)) == 1


class TestTheOtherPathKeepsItsTransaction:
    async def test_an_event_naming_no_video_and_its_jobs_roll_back_together(
        self, db: Db, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Row 44 for Gemini's hint (no video named): the event row and a job per unfinished video are separate
        statements in one transaction, so a failure after the first job leaves none of them."""
        profile = f"hinted_{uuid.uuid4().hex[:8]}"
        video = await make_video(db.database, status="in_progress", profile=profile)
        enqueue_sync = archive_service.enqueue_sync

        async def enqueue_then_crash(session: AsyncSession, **kwargs: Any) -> int | None:
            assert await enqueue_sync(session, **kwargs) is not None
            raise RuntimeError("crash after the event and a job were inserted")

        monkeypatch.setattr(archive_service, "enqueue_sync", enqueue_then_crash)
        hint = DeliveredEvent(
            webhook_id=f"wh_hint_{video.id}", event_id=None, type="video.completed", object_id=None, body="{}"
        )
        with pytest.raises(RuntimeError, match="crash after"):
            await webhook_service.receive(db.database, event=hint, worker=WorkerSettings(), profile=profile)
        assert await db.events(webhook_id=hint.webhook_id) == []
        assert await db.jobs(video.id) == []
