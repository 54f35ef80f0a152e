"""Callers only ever see our video ids: an upstream's message that names its own id (a 404 after expiry, a
refusal) reaches the caller with our id in its place."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.core.db import Database
from app.models import Asset, Video, VideoStatus
from tests.integration.test_videos_api import create, wait_until_terminal
from tests.support.settings import SIMULATOR_KEY


@pytest.fixture
async def simulator(simulator_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator_app),
        base_url="http://upstream.test",
        headers={"authorization": f"Bearer {SIMULATOR_KEY}"},
    ) as client:
        yield client


async def upstream_id_of(database: Database, video_id: str) -> str:
    async with database.sessionmaker() as session:
        video = await session.get(Video, video_id)
        assert video is not None and video.upstream_id is not None
        return video.upstream_id


def assert_only_ours(response: httpx.Response, *, ours: str, theirs: str) -> None:
    assert theirs != ours
    assert theirs not in response.text, response.text
    assert ours in response.json()["error"]["message"], response.text


class TestPassedThroughMessages:
    async def test_content_after_upstream_expiry_names_our_id(
        self, api: httpx.AsyncClient, simulator: httpx.AsyncClient, database: Database
    ) -> None:
        video = await create(api)
        await wait_until_terminal(api, video["id"])
        theirs = await upstream_id_of(database, video["id"])
        assert (await simulator.post(f"/_sim/videos/{theirs}/expire")).status_code == 200
        response = await api.get(f"/v1/videos/{video['id']}/content")
        assert response.status_code == 404
        assert_only_ours(response, ours=video["id"], theirs=theirs)

    async def test_remix_of_a_video_upstream_forgot_names_our_id(
        self, api: httpx.AsyncClient, simulator: httpx.AsyncClient, database: Database
    ) -> None:
        video = await create(api)
        await wait_until_terminal(api, video["id"])
        theirs = await upstream_id_of(database, video["id"])
        assert (await simulator.delete(f"/v1/videos/{theirs}")).status_code == 200
        response = await api.post(f"/v1/videos/{video['id']}/remix", json={"prompt": "again"})
        assert response.status_code == 404
        assert_only_ours(response, ours=video["id"], theirs=theirs)

    async def test_stored_upstream_messages_are_shown_with_our_id(
        self, api: httpx.AsyncClient, database: Database
    ) -> None:
        video = await create(api)
        await wait_until_terminal(api, video["id"])
        theirs = await upstream_id_of(database, video["id"])
        # What an upstream failure or a failed download may have recorded in its own words.
        async with database.sessionmaker.begin() as session:
            row = await session.get(Video, video["id"])
            assert row is not None
            row.status, row.error_code, row.error_message = VideoStatus.FAILED, "internal", f"Render {theirs} failed."
            await session.execute(
                update(Asset)
                .where(Asset.video_id == row.id, Asset.variant == "video")
                .values(state="expired", error=f"gone ({theirs} expired)")
            )
        for response in (
            await api.get(f"/v1/videos/{video['id']}"),
            await api.get("/v1/videos", params={"limit": 100}),
        ):
            assert theirs not in response.text, response.text
        retrieved = (await api.get(f"/v1/videos/{video['id']}")).json()
        assert retrieved["error"]["message"] == f"Render {video['id']} failed."
        assert retrieved["archive"]["video"]["error"] == f"gone ({video['id']} expired)"
