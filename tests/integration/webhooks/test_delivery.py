"""Accepted deliveries: recorded once, acted on once, in one transaction, acknowledged only when durable (B)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.db import Database
from app.core.resources import install_resources, resources_of
from app.models import ArchiveJob, EventOutcome, JobKind, JobState, Video
from tests.support.factories import make_video
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.webhooks import (
    WEBHOOK_PATH,
    Db,
    Delivery,
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
            slow = Database.of(engine)
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

        # An event type we do not act on: its row is written in a transaction, and committed (a delivery naming a
        # video is one autocommitted statement, with no COMMIT to fail: the test below).
        delivery = video_event("video_commit_lost", "batch.completed")
        # At the driver, as a real lost connection: asyncpg lets the socket's error through SQLAlchemy unwrapped.
        monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", lost_connection)
        response = await post(client, delivery)
        monkeypatch.undo()
        _assert_503(response)
        assert await db.events(webhook_id=delivery.webhook_id) == []
        # The sender's retry then succeeds.
        assert ack(await post(client, delivery.resigned()))["duplicate"] is False

    async def test_a_connection_lost_twice_under_the_one_statement_is_503_and_leaves_no_row(
        self, client: httpx.AsyncClient, db: Db, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The one statement is its own commit (decision 009): lost as it is sent, on its connection and again on
        the fresh one it is retried on (decision 012), it is this delivery's failed commit."""
        video, delivery, response = await deliver_losing_the_connection(client, db, monkeypatch, times=2)
        _assert_503(response)
        assert await db.events(webhook_id=delivery.webhook_id) == []
        assert await db.jobs(video.id) == []
        assert ack(await post(client, delivery.resigned()))["duplicate"] is False
        assert len(await db.jobs(video.id)) == 1

    async def test_a_connection_lost_once_under_the_one_statement_is_retried_and_recorded_once(
        self, client: httpx.AsyncClient, db: Db, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dead pooled connection never fails a delivery: the statement runs once more on a fresh connection."""
        video, delivery, response = await deliver_losing_the_connection(client, db, monkeypatch, times=1)
        assert ack(response)["duplicate"] is False
        assert len(await db.events(webhook_id=delivery.webhook_id)) == 1
        assert len(await db.jobs(video.id)) == 1


async def deliver_losing_the_connection(
    client: httpx.AsyncClient, db: Db, monkeypatch: pytest.MonkeyPatch, *, times: int
) -> tuple[Video, Delivery, httpx.Response]:
    """A delivery naming a new video, sent while the next `times` runs of the one statement lose their connection."""
    video = await make_video(db.database, status="in_progress")
    assert video.upstream_id is not None
    delivery = video_event(video.upstream_id)
    lost = lose_the_connection_under_the_record(monkeypatch, times=times)
    response = await post(client, delivery)
    monkeypatch.undo()
    assert len(lost) == times
    return video, delivery, response


def lose_the_connection_under_the_record(monkeypatch: pytest.MonkeyPatch, *, times: int) -> list[str]:
    """The next `times` runs of the receiver's one statement find their connection lost as they are sent, at the
    driver (as a reset socket): the connection is terminated and the socket's error raised. Returns the losses."""
    execute = asyncpg.connection.Connection._execute
    lost: list[str] = []

    async def losing(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if len(lost) < times and "INSERT INTO webhook_events" in query:
            lost.append(query)
            self.terminate()
            raise ConnectionResetError("connection lost under the statement")
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "_execute", losing)
    return lost


@asynccontextmanager
async def failing_job_insert(database: Database, video_id: str, action: str) -> AsyncIterator[None]:
    """A trigger that runs `action` after the sync job of `video_id` is inserted, inside the receiver's one
    statement (decision 009): the event row is written by then too, so what survives shows whether the two are one.
    """
    name = "fail_job_" + video_id.removeprefix("video_")[:20]
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.video_id = '{video_id}' THEN {action}; END IF; RETURN NEW; END $$"
            )
        )
        await connection.execute(
            text(f"CREATE TRIGGER {name} AFTER INSERT ON archive_jobs FOR EACH ROW EXECUTE FUNCTION {name}()")
        )
    try:
        yield
    finally:
        async with database.engine.begin() as connection:
            await connection.execute(text(f"DROP TRIGGER {name} ON archive_jobs"))
            await connection.execute(text(f"DROP FUNCTION {name}()"))


class TestTransactionalEnqueue:
    # Row 44: a failure between the event row and the job row leaves neither, and the answer is a 5xx. Both are
    # written by one statement (decision 009), so the failure is injected inside it, after the job's insert: a
    # crash (an error raised there: 500), or the database going away (its connection ended there: 503).
    @pytest.mark.parametrize(
        ("action", "status"),
        [
            (
                "RAISE EXCEPTION 'crash after both inserts: % event row(s)', "
                "(SELECT count(*) FROM webhook_events WHERE video_id = NEW.video_id)",
                500,
            ),
            ("PERFORM pg_terminate_backend(pg_backend_pid())", 503),
        ],
        ids=["crash", "database-error"],
    )
    async def test_a_failure_after_the_insert_leaves_neither_row(
        self,
        receiver_app: FastAPI,
        db: Db,
        action: str,
        status: int,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        video = await make_video(db.database, status="in_progress")
        assert video.upstream_id is not None
        delivery = video_event(video.upstream_id)
        async with (
            failing_job_insert(db.database, video.id, action),
            client_of(receiver_app, raise_app_exceptions=False) as client,
        ):
            response = await post(client, delivery)
        assert response.status_code == status, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        if status == 500:
            assert "crash after both inserts: 1 event row(s)" in caplog.text  # both rows existed in the statement…
        assert await db.events(webhook_id=delivery.webhook_id) == []  # …and neither survived it
        assert await db.jobs(video.id) == []
        async with client_of(receiver_app) as client:  # the sender's retry then records it, and queues the job
            assert ack(await post(client, delivery.resigned()))["duplicate"] is False
        assert len(await db.jobs(video.id)) == 1


def _assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
