"""The facade's reads as plain rows on the driver (decision 013): a retrieve and a list answer exactly what the
rows hold, and a list's cursor is found in the page's own statement, with its three outcomes (a page, an empty
page, no such cursor) kept apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from app.core.db import Database
from app.core.resources import resources_of
from app.main import create_app
from app.models import Asset, AssetState, Video, VideoOrigin, VideoStatus
from tests.support.factories import MadeCaller, make_caller, make_video
from tests.support.gateway import gateway_client
from tests.support.settings import make_settings
from tests.support.wire import on_the_wire


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def caller(database: Database) -> MadeCaller:
    return await make_caller(database)


@pytest.fixture
async def client(gateway: FastAPI, caller: MadeCaller) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway, caller.key) as api:
        yield api


async def five_videos(database: Database, caller: MadeCaller) -> list[str]:
    """Five of the caller's videos, oldest first (the list's order is insertion order)."""
    return [(await make_video(database, caller=caller, prompt=f"clip {n}")).id for n in range(5)]


def ids(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return [video["id"] for video in page.json()["data"]]


class TestRetrieve:
    async def test_the_answer_is_what_the_rows_hold(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller
    ) -> None:
        source = await make_video(database, caller=caller)
        completed_at = datetime(2026, 11, 30, 12, 0, 5, tzinfo=UTC)
        video = await make_video(
            database,
            caller=caller,
            upstream_id="up_remix_1",
            remixed_from=source.id,
            origin=VideoOrigin.REMIX,
            caller_metadata={"team": "ads", "run": "7"},
            completed_at=completed_at,
            error_code="partial",
            error_message="render up_remix_1 lost a frame",
        )
        async with database.sessionmaker.begin() as session:
            session.add(Asset(video_id=video.id, variant="video", state=AssetState.ARCHIVED, bytes=1234, sha256="ab"))
            session.add(Asset(video_id=video.id, variant="thumbnail", state=AssetState.FAILED, error="up_remix_1 gone"))
        body = (await client.get(f"/v1/videos/{video.id}")).json()
        assert body["metadata"] == {"team": "ads", "run": "7"}
        assert (body["origin"], body["source_video_id"], body["remixed_from_video_id"]) == (
            "remix",
            source.id,
            source.id,
        )
        assert body["completed_at"] == int(completed_at.timestamp())
        assert body["created_at"] == int(video.created_at.timestamp())
        # The upstream id never reaches the caller: ours stands in its place, in the error and in the archive.
        assert body["error"] == {"code": "partial", "message": f"render {video.id} lost a frame"}
        assert list(body["archive"]) == ["thumbnail", "video"]  # variant order
        assert body["archive"]["video"] == {"state": "archived", "bytes": 1234, "sha256": "ab", "error": None}
        assert body["archive"]["thumbnail"] == {
            "state": "failed",
            "bytes": None,
            "sha256": None,
            "error": f"{video.id} gone",
        }

    async def test_a_video_with_no_asset_rows_has_an_empty_archive(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller
    ) -> None:
        video = await make_video(database, caller=caller, status=VideoStatus.FAILED, upstream_id=None)
        body = (await client.get(f"/v1/videos/{video.id}")).json()
        assert (body["status"], body["archive"], body["metadata"]) == ("failed", {}, None)

    async def test_deleted_and_other_callers_videos_are_unknown(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller
    ) -> None:
        deleted = await make_video(database, caller=caller, deleted_at=datetime.now(UTC))
        strangers = await make_video(database)
        for video_id in (deleted.id, strangers.id, "video_unknown"):
            response = await client.get(f"/v1/videos/{video_id}")
            assert response.status_code == 404
            assert response.json()["error"]["param"] == "video_id"


class TestListAfterACursor:
    @pytest.mark.parametrize("order", ["desc", "asc"])
    async def test_the_page_follows_the_cursor(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller, order: str
    ) -> None:
        made = await five_videos(database, caller)
        in_order = made if order == "asc" else made[::-1]
        page = await client.get("/v1/videos", params={"order": order, "after": in_order[1], "limit": 2})
        assert ids(page) == in_order[2:4]
        assert page.json()["has_more"] is True
        rest = await client.get("/v1/videos", params={"order": order, "after": in_order[3], "limit": 2})
        assert ids(rest) == in_order[4:]
        assert rest.json()["has_more"] is False

    @pytest.mark.parametrize("order", ["desc", "asc"])
    async def test_after_the_last_video_the_page_is_empty_not_unknown(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller, order: str
    ) -> None:
        made = await five_videos(database, caller)
        last = made[0] if order == "desc" else made[-1]
        page = await client.get("/v1/videos", params={"order": order, "after": last})
        assert page.status_code == 200, page.text
        assert page.json() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}

    async def test_a_deleted_cursor_still_pages_from_its_place(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller
    ) -> None:
        made = await five_videos(database, caller)
        async with database.sessionmaker.begin() as session:
            (await session.get_one(Video, made[2])).deleted_at = datetime.now(UTC)
        assert ids(await client.get("/v1/videos", params={"after": made[2]})) == [made[1], made[0]]
        assert ids(await client.get("/v1/videos", params={"order": "asc", "after": made[2]})) == made[3:]

    async def test_another_callers_video_is_no_cursor(
        self, client: httpx.AsyncClient, database: Database, caller: MadeCaller
    ) -> None:
        await five_videos(database, caller)
        strangers = await make_video(database)
        response = await client.get("/v1/videos", params={"after": strangers.id})
        assert response.status_code == 404
        assert response.json()["error"]["param"] == "after"

    async def test_the_cursor_and_its_page_are_one_statement(
        self, gateway: FastAPI, client: httpx.AsyncClient, database: Database, caller: MadeCaller
    ) -> None:
        made = await five_videos(database, caller)
        assert (await client.get("/v1/videos")).status_code == 200  # the key is now remembered
        with on_the_wire(resources_of(gateway).database.engine) as (statements, control):
            assert ids(await client.get("/v1/videos", params={"after": made[3]})) == made[2::-1]
        assert len(statements) == 2, statements  # the key's rate counter, the page
        assert control == [], control
