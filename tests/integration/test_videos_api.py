"""The /v1/videos facade in process: gateway → simulator over ASGI, real Postgres."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.core.db import Database
from app.main import create_app
from app.models import Video
from tests.support.gateway import NewCaller, gateway_client
from tests.support.images import data_url, image_bytes
from tests.support.settings import make_settings
from tests.support.transports import CountingTransport

VIDEO_FIELDS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


async def create(api: httpx.AsyncClient, prompt: str = "a red ball rolls", **fields: str) -> dict[str, Any]:
    response = await api.post(
        "/v1/videos", files={"prompt": (None, prompt), **{k: (None, v) for k, v in fields.items()}}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_until_terminal(api: httpx.AsyncClient, video_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await api.get(f"/v1/videos/{video_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{video_id} did not finish in {timeout}s")


class TestCreateAndRetrieve:
    async def test_created_video_has_all_13_fields_and_our_own_id(self, api: httpx.AsyncClient) -> None:
        video = await create(api, seconds="8", size="1280x720")
        assert set(video) == VIDEO_FIELDS
        assert video["id"].startswith("video_")
        assert video["status"] in ("queued", "in_progress")
        assert (video["seconds"], video["size"], video["model"]) == ("8", "1280x720", "sora-2")

    async def test_retrieve_follows_upstream_to_completion(self, api: httpx.AsyncClient) -> None:
        video = await create(api)
        done = await wait_until_terminal(api, video["id"])
        assert done["status"] == "completed"
        assert done["progress"] == 100
        assert done["completed_at"] is not None
        assert done["expires_at"] > done["completed_at"]

    async def test_moderated_prompt_fails_with_the_upstream_error(self, api: httpx.AsyncClient) -> None:
        video = await create(api, prompt="something forbidden here")
        done = await wait_until_terminal(api, video["id"])
        assert done["status"] == "failed"
        assert done["error"]["code"] == "moderation_blocked"

    async def test_json_create_with_a_data_url_image(self, api: httpx.AsyncClient) -> None:
        image = data_url(image_bytes(1280, 720))
        response = await api.post(
            "/v1/videos",
            json={"prompt": "from a still", "size": "1280x720", "input_reference": {"image_url": image}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["size"] == "1280x720"

    async def test_multipart_create_with_an_image_file(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/v1/videos",
            files={
                "prompt": (None, "from a file"),
                "size": (None, "720x1280"),
                "input_reference": ("upload", image_bytes(720, 1280, "JPEG"), "application/octet-stream"),
            },
        )
        assert response.status_code == 200, response.text


class TestContent:
    async def test_content_is_404_in_openai_shape_before_completion(self, api: httpx.AsyncClient) -> None:
        video = await create(api)
        response = await api.get(f"/v1/videos/{video['id']}/content")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "video_not_ready"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    @pytest.mark.parametrize(
        ("variant", "content_type", "magic_at", "magic"),
        [
            ("video", "video/mp4", 4, b"ftyp"),
            ("thumbnail", "image/webp", 8, b"WEBP"),
            ("spritesheet", "image/jpeg", 0, b"\xff\xd8\xff"),
        ],
    )
    async def test_each_variant_is_served_with_its_type(
        self, api: httpx.AsyncClient, variant: str, content_type: str, magic_at: int, magic: bytes
    ) -> None:
        video = await create(api)
        await wait_until_terminal(api, video["id"])
        response = await api.get(f"/v1/videos/{video['id']}/content", params={"variant": variant})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == content_type
        assert response.content[magic_at : magic_at + len(magic)] == magic

    async def test_unknown_variant_is_400(self, api: httpx.AsyncClient) -> None:
        video = await create(api)
        response = await api.get(f"/v1/videos/{video['id']}/content", params={"variant": "poster"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "variant"


class TestListDeleteRemix:
    async def test_list_pages_with_after_in_both_orders(self, api: httpx.AsyncClient) -> None:
        ids = [(await create(api, prompt=f"clip {n}"))["id"] for n in range(5)]
        newest_first = (await api.get("/v1/videos", params={"limit": 2})).json()
        assert [v["id"] for v in newest_first["data"]] == ids[::-1][:2]
        assert newest_first["has_more"] is True
        following = (await api.get("/v1/videos", params={"limit": 10, "after": newest_first["last_id"]})).json()
        assert [v["id"] for v in following["data"]] == ids[::-1][2:]
        assert following["has_more"] is False
        oldest_first = (await api.get("/v1/videos", params={"order": "asc", "limit": 3})).json()
        assert [v["id"] for v in oldest_first["data"]] == ids[:3]
        assert (oldest_first["first_id"], oldest_first["last_id"]) == (ids[0], ids[2])

    async def test_delete_removes_the_video_from_retrieve_and_list(self, api: httpx.AsyncClient) -> None:
        video = await create(api)
        response = await api.delete(f"/v1/videos/{video['id']}")
        assert response.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
        assert (await api.get(f"/v1/videos/{video['id']}")).status_code == 404
        listed = (await api.get("/v1/videos", params={"limit": 100})).json()["data"]
        assert video["id"] not in [v["id"] for v in listed]

    async def test_remix_of_a_completed_video_links_to_its_source(self, api: httpx.AsyncClient) -> None:
        source = await create(api, size="1280x720", seconds="8")
        await wait_until_terminal(api, source["id"])
        response = await api.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "now at night"})
        assert response.status_code == 200, response.text
        remix = response.json()
        assert remix["remixed_from_video_id"] == source["id"]
        assert (remix["size"], remix["seconds"], remix["prompt"]) == ("1280x720", "8", "now at night")
        assert remix["id"] != source["id"]

    async def test_remix_before_completion_is_400(self, api: httpx.AsyncClient) -> None:
        source = await create(api)
        response = await api.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "x"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_video_state"


class TestOwnership:
    async def test_another_caller_gets_the_unknown_id_404_everywhere(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        video = await create(api)
        await wait_until_terminal(api, video["id"])
        unknown = await other_api.get("/v1/videos/video_doesnotexist")
        answers = [
            await other_api.get(f"/v1/videos/{video['id']}"),
            await other_api.get(f"/v1/videos/{video['id']}/content"),
            await other_api.delete(f"/v1/videos/{video['id']}"),
            await other_api.post(f"/v1/videos/{video['id']}/remix", json={"prompt": "steal"}),
        ]
        for response in answers:
            assert response.status_code == 404
            assert response.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
        listed = (await other_api.get("/v1/videos", params={"limit": 100})).json()["data"]
        assert video["id"] not in [v["id"] for v in listed]
        # The owner still has it: the other caller's delete did nothing.
        assert (await api.get(f"/v1/videos/{video['id']}")).status_code == 200


class TestBoundedRefresh:
    async def test_a_burst_of_polls_within_the_interval_makes_at_most_one_upstream_read(
        self, database_url: str, simulator_app: FastAPI, new_caller_key: NewCaller, database: Database
    ) -> None:
        slow_upstream = CountingTransport(SlowTransport(httpx.ASGITransport(app=simulator_app), delay=0.2))
        app = create_app(make_settings(database_url, refresh_min_interval_seconds=60), upstream_transport=slow_upstream)
        async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as client:
            video = await create(client)
            # Just created: the state is fresh, so polls are answered from Postgres.
            await asyncio.gather(*(client.get(f"/v1/videos/{video['id']}") for _ in range(10)))
            assert slow_upstream.count("GET", "/v1/videos/") == 0
            # Make it stale: a burst of concurrent polls now shares one upstream read.
            async with database.sessionmaker.begin() as session:
                await session.execute(update(Video).where(Video.id == video["id"]).values(refreshed_at=None))
            responses = await asyncio.gather(*(client.get(f"/v1/videos/{video['id']}") for _ in range(20)))
            assert all(r.status_code == 200 for r in responses)
            assert slow_upstream.count("GET", "/v1/videos/") == 1


class SlowTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, *, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.delay)
        return await self.inner.handle_async_request(request)
