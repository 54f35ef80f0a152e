"""Accepted deliveries: recorded once, acted on once, in one transaction, acknowledged only when durable (B)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.archive import service as archive_service
from app.core.config import Settings
from app.core.db import Database
from app.core.resources import install_resources, resources_of
from app.models import ArchiveJob, EventOutcome, JobKind, JobState, WebhookEvent
from tests.support.factories import make_video
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.webhooks import (
    WEBHOOK_PATH,
    Db,
    build_receiver_app,
    client_of,
    event_body,
    post,
    running,
    signed_delivery,
    video_event,
)

OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
THIRD_SECRET = "whsec_" + base64.b64encode(b"t" * 32).decode()


def ack(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["received"] is True
    return body


class TestOutcomes:
    @pytest.mark.parametrize("event_type", ["video.completed", "video.failed"])
    async def test_an_event_for_our_video_queues_one_sync_job(
        self, client: httpx.AsyncClient, db: Db, event_type: str
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id, event_type)
        assert ack(await post(client, delivery)) == {"received": True, "duplicate": False}
        [event] = await db.events(webhook_id=delivery.webhook_id)
        assert (event.outcome, event.video_id, event.event_id) == ("enqueued", video.id, delivery.event_id)
        assert (event.event_type, event.upstream_video_id) == (event_type, video.upstream_id)
        assert event.body == delivery.body.decode()
        [job] = await db.jobs(video.id)
        assert (job.kind, job.state, job.variant) == (JobKind.SYNC.value, JobState.QUEUED.value, None)

    # Row 20.
    async def test_an_event_for_an_unknown_video_is_kept_as_an_orphan_without_a_job(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        before = await db.rows()
        delivery = video_event("video_not_ours_yet")
        assert ack(await post(client, delivery))["duplicate"] is False
        [event] = await db.events(webhook_id=delivery.webhook_id)
        assert (event.outcome, event.video_id, event.upstream_video_id) == (
            EventOutcome.ORPHAN.value,
            None,
            "video_not_ours_yet",
        )
        assert (await db.rows()).jobs == before.jobs

    async def test_an_event_for_a_deleted_video_is_ignored(self, client: httpx.AsyncClient, db: Db) -> None:
        video = await make_video(db.database, status="in_progress", deleted_at=datetime.now(UTC))
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        assert ack(await post(client, delivery))["duplicate"] is False
        [event] = await db.events(webhook_id=delivery.webhook_id)
        assert (event.outcome, event.video_id) == (EventOutcome.IGNORED.value, video.id)
        assert await db.jobs(video.id) == []

    # Row 16.
    @pytest.mark.parametrize("event_type", ["batch.completed", "response.completed", "video.expired"])
    async def test_another_event_type_is_acknowledged_and_ignored(
        self, client: httpx.AsyncClient, db: Db, event_type: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("INFO", logger="app.webhooks")
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        # Even naming one of our videos: only video.completed / video.failed queue work.
        delivery = video_event(video.upstream_id, event_type)
        assert ack(await post(client, delivery))["duplicate"] is False
        [event] = await db.events(webhook_id=delivery.webhook_id)
        assert (event.outcome, event.event_type, event.upstream_video_id) == ("ignored", event_type, None)
        assert await db.jobs(video.id) == []
        assert f"{event_type}" in caplog.text and "ignored" in caplog.text

    async def test_an_event_without_an_event_id_is_recorded(self, client: httpx.AsyncClient, db: Db) -> None:
        delivery = signed_delivery(event_body("video.failed", "video_unknown_2", event_id=None))
        ack(await post(client, delivery))
        [event] = await db.events(webhook_id=delivery.webhook_id)
        assert event.event_id is None


class TestDuplicates:
    # Row 17.
    async def test_the_same_delivery_five_times_in_sequence_is_recorded_and_acted_on_once(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        answers = [ack(await post(client, delivery)) for _ in range(5)]
        assert [a["duplicate"] for a in answers] == [False, True, True, True, True]
        assert len(await db.events(webhook_id=delivery.webhook_id)) == 1
        assert len(await db.jobs(video.id)) == 1

    async def test_the_same_delivery_twenty_times_at_once_is_recorded_and_acted_on_once(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        answers = await asyncio.gather(*(post(client, delivery) for _ in range(20)))
        duplicates = [ack(answer)["duplicate"] for answer in answers]
        assert duplicates.count(False) == 1
        assert len(await db.events(webhook_id=delivery.webhook_id)) == 1
        assert len(await db.jobs(video.id)) == 1

    # Row 18.
    async def test_a_redelivery_with_a_fresh_timestamp_and_signature_is_a_duplicate(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        first = video_event(video.upstream_id, timestamp=int(time.time()) - 120)
        again = first.resigned()
        assert again.headers["webhook-signature"] != first.headers["webhook-signature"]
        assert ack(await post(client, first))["duplicate"] is False
        assert ack(await post(client, again))["duplicate"] is True
        assert len(await db.events(webhook_id=first.webhook_id)) == 1
        assert len(await db.jobs(video.id)) == 1

    async def test_the_same_event_under_a_new_webhook_id_is_a_duplicate(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        first = video_event(video.upstream_id)
        again = signed_delivery(first.body, event_id=first.event_id)
        assert again.webhook_id != first.webhook_id
        assert ack(await post(client, first))["duplicate"] is False
        assert ack(await post(client, again))["duplicate"] is True
        assert len(await db.events(event_id=first.event_id)) == 1
        assert await db.events(webhook_id=again.webhook_id) == []
        assert len(await db.jobs(video.id)) == 1

    async def test_a_duplicate_after_the_sync_finished_queues_nothing_new(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        # The queue's unique index only covers live jobs; it is the recorded delivery that stops a requeue.
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        ack(await post(client, delivery))
        async with db.database.sessionmaker.begin() as session:
            await session.execute(
                update(ArchiveJob).where(ArchiveJob.video_id == video.id).values(state=JobState.SUCCEEDED.value)
            )
        assert ack(await post(client, delivery.resigned()))["duplicate"] is True
        assert [job.state for job in await db.jobs(video.id)] == [JobState.SUCCEEDED.value]

    async def test_a_second_event_for_a_video_whose_sync_is_queued_adds_no_job(
        self, client: httpx.AsyncClient, db: Db
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        ack(await post(client, video_event(video.upstream_id, "video.completed")))
        assert ack(await post(client, video_event(video.upstream_id, "video.failed")))["duplicate"] is False
        assert len(await db.jobs(video.id)) == 1  # the queue keeps one live sync job per video


class TestClockSkewAndRotation:
    # Row 25 (and 5): the sender's clock 4 minutes off either way still works.
    @pytest.mark.parametrize("skew_seconds", [-240, 240])
    async def test_a_four_minute_skew_is_accepted(self, client: httpx.AsyncClient, skew_seconds: int) -> None:
        delivery = video_event("video_skewed", timestamp=int(time.time()) + skew_seconds)
        assert ack(await post(client, delivery))["duplicate"] is False

    # Row 10 through configuration: two secrets at once, separated as the settings allow.
    async def test_during_a_rotation_deliveries_signed_with_either_secret_are_accepted(
        self, receiver_settings: Settings
    ) -> None:
        rotating = receiver_settings.model_copy(
            update={
                "webhooks": receiver_settings.webhooks.model_copy(
                    update={"secrets": SecretStr(f"{OTHER_SECRET}, {TEST_WEBHOOK_SECRET}")}
                )
            }
        )
        app = build_receiver_app(rotating)
        async with running(app), client_of(app) as client:
            ack(await post(client, video_event("video_rot_1", secret=OTHER_SECRET)))
            ack(await post(client, video_event("video_rot_2")))
            assert (await post(client, video_event("video_rot_3", secret=THIRD_SECRET))).status_code == 401


class TestStatusDiscipline:
    # Row 23: a trailing slash is served, never redirected (FastAPI's redirect_slashes is on in this app).
    async def test_a_trailing_slash_is_served_not_redirected(
        self, receiver_app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        assert receiver_app.router.redirect_slashes is True
        response = await post(client, video_event("video_slash"), path=WEBHOOK_PATH + "/")
        assert not response.is_redirect
        assert ack(response)["duplicate"] is False

    async def test_the_path_comes_from_the_settings(self, receiver_settings: Settings) -> None:
        moved = receiver_settings.model_copy(
            update={"webhooks": receiver_settings.webhooks.model_copy(update={"path": "/hooks/upstream/"})}
        )
        app = build_receiver_app(moved)
        async with running(app), client_of(app) as client:
            assert ack(await post(client, video_event("video_moved"), path="/hooks/upstream"))
            assert ack(await post(client, video_event("video_moved_2"), path="/hooks/upstream/"))
            assert (await post(client, video_event("video_moved_3"))).status_code == 404


class TestDatabaseFailures:
    # Row 22: no durable row → no 2xx; a 503 with Retry-After, in OpenAI's shape, quickly.
    async def test_a_database_that_refuses_connections_is_503_with_retry_after(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # The socket is closed: nothing listens on the port.
        app = build_receiver_app(make_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing"))
        async with running(app), client_of(app) as client:
            started = time.perf_counter()
            response = await post(client, video_event("video_db_down"))
        assert time.perf_counter() - started < 5
        _assert_503(response)

    async def test_a_statement_timeout_is_503_and_leaves_no_row(self, receiver_settings: Settings, db: Db) -> None:
        app = build_receiver_app(receiver_settings)
        delivery = video_event("video_db_slow")
        async with running(app), client_of(app) as client:
            # This app's sessions give up on any statement after 300 ms, as a production statement_timeout would.
            engine = create_async_engine(
                receiver_settings.db.url.get_secret_value(),
                connect_args={"server_settings": {"statement_timeout": "300"}},
            )
            slow = Database(engine=engine, sessionmaker=async_sessionmaker(engine, expire_on_commit=False))
            install_resources(app, dataclasses.replace(resources_of(app), database=slow))
            async with db.database.engine.connect() as blocker:
                await blocker.execute(text("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE"))
                response = await post(client, delivery)
                await blocker.rollback()
        _assert_503(response)
        assert await db.events(webhook_id=delivery.webhook_id) == []

    async def test_a_failed_commit_is_503_and_leaves_no_row(
        self, client: httpx.AsyncClient, db: Db, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def lost_connection(self: asyncpg.transaction.Transaction) -> None:
            self._connection.terminate()  # the transaction dies with its connection, as when the socket is lost
            raise ConnectionResetError("connection lost at commit")

        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        # At the driver, as a real lost connection: asyncpg lets the socket's error through SQLAlchemy unwrapped.
        monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", lost_connection)
        response = await post(client, delivery)
        monkeypatch.undo()
        _assert_503(response)
        assert await db.events(webhook_id=delivery.webhook_id) == []
        assert await db.jobs(video.id) == []
        # The sender's retry then succeeds.
        assert ack(await post(client, delivery.resigned()))["duplicate"] is False


class TestTransactionalEnqueue:
    # Row 44: a crash between the event row and the job row leaves neither, and the answer is a 5xx.
    # `None`: the database goes away mid-transaction (its connection is cut under the session).
    @pytest.mark.parametrize(
        ("failure", "status"),
        [(RuntimeError("crash after the event insert"), 500), (None, 503)],
        ids=["crash", "database-error"],
    )
    async def test_a_failure_after_the_insert_leaves_neither_row(
        self,
        receiver_app: FastAPI,
        db: Db,
        monkeypatch: pytest.MonkeyPatch,
        failure: Exception | None,
        status: int,
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        enqueue_sync = archive_service.enqueue_sync
        seen_in_transaction: list[int] = []

        async def enqueue_then_fail(session: AsyncSession, **kwargs: Any) -> int | None:
            job_id = await enqueue_sync(session, **kwargs)
            assert job_id is not None
            count = select(func.count()).select_from(WebhookEvent).where(WebhookEvent.webhook_id == delivery.webhook_id)
            seen_in_transaction.append((await session.execute(count)).scalar_one())
            if failure is not None:
                raise failure
            raw = await (await session.connection()).get_raw_connection()
            assert raw.driver_connection is not None
            raw.driver_connection.terminate()  # as a lost socket: the driver's next call fails
            await session.execute(count)
            raise AssertionError("the statement on a cut connection succeeded")

        monkeypatch.setattr(archive_service, "enqueue_sync", enqueue_then_fail)
        async with client_of(receiver_app, raise_app_exceptions=False) as client:
            response = await post(client, delivery)
        monkeypatch.undo()
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert seen_in_transaction == [1]  # both rows existed inside the transaction…
        assert await db.events(webhook_id=delivery.webhook_id) == []  # …and neither survived it
        assert await db.jobs(video.id) == []


def _assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
