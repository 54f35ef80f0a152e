"""What a failed paid call leaves behind: nothing when nothing was created, a flagged row when unsure."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.config import CallbackSettings
from app.core.db import Database
from app.main import create_app
from app.models import CallbackDelivery, Video
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import make_settings


class ScriptedUpstream(httpx.AsyncBaseTransport):
    """Answers every create with one fixed outcome and counts the attempts."""

    def __init__(self, outcome: int | type[Exception]) -> None:
        self.outcome = outcome
        self.creates = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.creates += 1
        if isinstance(self.outcome, int):
            return httpx.Response(self.outcome, json={"error": {"message": f"scripted {self.outcome}"}})
        raise self.outcome("scripted", request=request)  # type: ignore[call-arg]


@pytest.fixture
async def caller_key(new_caller_key: NewCaller) -> str:
    return await new_caller_key()


async def run_create(
    database_url: str, upstream: ScriptedUpstream, key: str, *, callback_url: str | None = None
) -> httpx.Response:
    settings = make_settings(database_url)
    # Callbacks go to loopback here, which only an explicit allow-list admits.
    settings = settings.model_copy(update={"callbacks": CallbackSettings(allowed_destinations=["127.0.0.1/32"])})
    app = create_app(settings, upstream_transport=upstream)
    form = {"prompt": (None, "a paid render")}
    if callback_url is not None:
        form["callback_url"] = (None, callback_url)
    async with app.router.lifespan_context(app), gateway_client(app, key) as client:
        return await client.post("/v1/videos", files=form)


async def count_videos(database: Database, prompt: str = "a paid render") -> dict[str, int]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(Video.status, func.count()).where(Video.prompt == prompt).group_by(Video.status)
        )
        return {status: count for status, count in rows.all()}


class TestAmbiguousFailures:
    @pytest.mark.parametrize("outcome", [500, 502, httpx.ReadTimeout, httpx.RemoteProtocolError])
    async def test_sent_then_failed_is_reported_not_retried_and_flagged(
        self, database_url: str, database: Database, caller_key: str, outcome: int | type[Exception]
    ) -> None:
        before = await count_videos(database)
        upstream = ScriptedUpstream(outcome)
        response = await run_create(database_url, upstream, caller_key)
        assert upstream.creates == 1
        assert response.status_code in (502, 504)
        # The stock SDK honours this header: it must not retry a render that may have started.
        assert response.headers["x-should-retry"] == "false"
        assert response.json()["error"]["type"] == "server_error"
        after = await count_videos(database)
        assert after.get("failed", 0) == before.get("failed", 0) + 1

    async def test_the_caller_also_gets_a_failed_callback_for_it(
        self, database_url: str, database: Database, caller_key: str
    ) -> None:
        url = "http://127.0.0.1:9/renders"
        response = await run_create(database_url, ScriptedUpstream(httpx.ReadTimeout), caller_key, callback_url=url)
        assert response.status_code == 504, response.text
        async with database.sessionmaker() as session:
            video = (
                (
                    await session.execute(
                        select(Video).where(Video.callback_url == url).order_by(Video.created_at.desc())
                    )
                )
                .scalars()
                .first()
            )
            assert video is not None and video.error_code == "upstream_submission_unknown"
            events = (
                (
                    await session.execute(
                        select(CallbackDelivery.event_type).where(CallbackDelivery.video_id == video.id)
                    )
                )
                .scalars()
                .all()
            )
        assert events == ["video.failed"]


class TestDefiniteFailures:
    @pytest.mark.parametrize(("outcome", "status"), [(400, 400), (429, 429), (httpx.ConnectError, 503)])
    async def test_nothing_created_leaves_no_row(
        self, database_url: str, database: Database, caller_key: str, outcome: int | type[Exception], status: int
    ) -> None:
        before = await count_videos(database)
        response = await run_create(database_url, ScriptedUpstream(outcome), caller_key)
        assert response.status_code == status
        assert await count_videos(database) == before


class TestDevKey:
    async def test_dev_key_works_only_in_dev_mode(
        self, database_url: str, database: Database, simulator_app: FastAPI
    ) -> None:
        from app.auth import service as auth_service
        from app.core.config import Mode

        async with database.sessionmaker.begin() as session:
            await auth_service.ensure_dev_caller(session, key="vg-dev-key-for-test")
        transport = httpx.ASGITransport(app=simulator_app)
        for mode, expected in ((Mode.DEV, 200), (Mode.PRODUCTION, 401)):
            settings = make_settings(database_url).model_copy(update={"mode": mode})
            app = create_app(settings, upstream_transport=transport)
            async with app.router.lifespan_context(app), gateway_client(app, "vg-dev-key-for-test") as client:
                assert (await client.get("/v1/videos")).status_code == expected
