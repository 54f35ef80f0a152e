"""The `/v1/videos` contract end to end over ASGITransport: lifecycle, real files, list, delete, remix, auth."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import av
import httpx
import pytest
from PIL import Image

Factory = Callable[..., Any]
Poll = Callable[..., Awaitable[dict[str, Any]]]
Create = Callable[..., Awaitable[dict[str, Any]]]

VIDEO_FIELDS = {
    "id", "object", "model", "status", "progress", "created_at", "completed_at", "expires_at", "prompt",
    "size", "seconds", "remixed_from_video_id", "error",
}  # fmt: skip


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


class TestCreate:
    async def test_new_video_is_queued_with_all_fields_and_defaults(self, asgi_sim: Factory) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            response = await client.post("/v1/videos", files={"prompt": (None, "a red fox")})
            video = response.json()
            assert set(video) == VIDEO_FIELDS
            assert video["id"].startswith("video_") and int(video["id"][6:], 16) >= 0
            assert (video["object"], video["status"], video["progress"]) == ("video", "queued", 0)
            assert (video["model"], video["size"], video["seconds"]) == ("sora-2", "720x1280", "4")
            for unset in ("completed_at", "expires_at", "remixed_from_video_id", "error"):
                assert video[unset] is None
            fetched = await client.get(f"/v1/videos/{video['id']}")
            assert fetched.json()["status"] == "queued"

    async def test_json_body_with_data_url_reference_is_accepted(self, asgi_sim: Factory) -> None:
        image_url = "data:image/png;base64," + base64.b64encode(png((1280, 720))).decode()
        async with asgi_sim(queue_seconds=60) as client:
            response = await client.post(
                "/v1/videos",
                json={"prompt": "x", "size": "1280x720", "seconds": "8", "input_reference": {"image_url": image_url}},
            )
            assert response.status_code == 200, response.text
            assert (response.json()["size"], response.json()["seconds"]) == ("1280x720", "8")

    async def test_multipart_reference_must_match_size(self, asgi_sim: Factory) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            good = await client.post(
                "/v1/videos",
                data={"prompt": "x", "size": "1280x720"},
                files={"input_reference": ("ref.png", png((1280, 720)), "image/png")},
            )
            assert good.status_code == 200, good.text
            bad = await client.post(
                "/v1/videos",
                data={"prompt": "x", "size": "720x1280"},
                files={"input_reference": ("ref.png", png((1280, 720)), "image/png")},
            )
            assert assert_openai_error(bad, 400)["param"] == "input_reference"

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"prompt": "x", "style": "noir"}, "style"),
            ({"prompt": "x", "size": "1920x1080"}, "size"),
            ({"seconds": "4"}, "prompt"),
            ({"prompt": "x", "input_reference": {"file_id": "file_1"}}, "input_reference.file_id"),
        ],
    )
    async def test_invalid_json_bodies_get_400_in_openai_shape(
        self, asgi_sim: Factory, body: dict[str, Any], param: str
    ) -> None:
        async with asgi_sim() as client:
            error = assert_openai_error(await client.post("/v1/videos", json=body), 400)
            assert error["param"] == param
            assert error["type"] == "invalid_request_error"
            stats = (await client.get("/_sim/stats")).json()
            assert (stats["create_requests"], stats["videos_created"]) == (1, 0)


class TestAuth:
    async def test_missing_or_wrong_key_is_401(self, asgi_sim: Factory) -> None:
        async with asgi_sim() as client:
            missing = await client.get("/v1/videos", headers={"Authorization": ""})
            assert assert_openai_error(missing, 401)["type"] == "invalid_request_error"
            wrong = await client.get("/v1/videos", headers={"Authorization": "Bearer nope"})
            assert assert_openai_error(wrong, 401)["code"] == "invalid_api_key"
            admin = await client.get("/_sim/faults", headers={"Authorization": "Bearer nope"})
            assert_openai_error(admin, 401)


class TestLifecycle:
    async def test_progress_rises_then_completes_with_real_files(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim(queue_seconds=0.2, render_seconds=0.6, ttl_seconds=600) as client:
            video = await create(client, size="1280x720", seconds="4")
            assert video["status"] == "queued"
            running = await poll(client, video["id"], statuses=("in_progress",))
            assert 0 < running["progress"] < 100
            done = await poll(client, video["id"])
            assert (done["status"], done["progress"], done["error"]) == ("completed", 100, None)
            assert done["completed_at"] >= video["created_at"]
            assert done["expires_at"] == done["completed_at"] + 600

            mp4 = await client.get(f"/v1/videos/{video['id']}/content")
            assert mp4.headers["content-type"] == "video/mp4"
            assert int(mp4.headers["content-length"]) == len(mp4.content)
            with av.open(io.BytesIO(mp4.content), mode="r") as container:
                stream = container.streams.video[0]
                assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
                assert (stream.width, stream.height) == (1280, 720)
                frames = sum(1 for _ in container.decode(stream))
                assert frames == 4 * 4  # seconds x fps
                assert container.duration is not None
                assert container.duration / 1_000_000 == pytest.approx(4.0, abs=0.3)

            thumbnail = await client.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
            assert thumbnail.headers["content-type"] == "image/webp"
            with Image.open(io.BytesIO(thumbnail.content)) as image:
                assert image.format == "WEBP"
            sheet = await client.get(f"/v1/videos/{video['id']}/content", params={"variant": "spritesheet"})
            assert sheet.headers["content-type"] == "image/jpeg"
            with Image.open(io.BytesIO(sheet.content)) as image:
                assert image.format == "JPEG" and image.width > image.height

    async def test_blocked_prompt_fails_with_moderation_error(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim() as client:
            video = await create(client, prompt="a FORBIDDEN scene")
            failed = await poll(client, video["id"])
            assert failed["status"] == "failed"
            assert failed["error"]["code"] == "moderation_blocked" and failed["error"]["message"]
            assert failed["expires_at"] is None
            content = await client.get(f"/v1/videos/{video['id']}/content")
            assert_openai_error(content, 404)

    async def test_completion_happens_without_anyone_polling(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim() as client:
            await create(client)
            for _ in range(200):
                stats = (await client.get("/_sim/stats")).json()
                if stats["renders_completed"]:
                    break
                await asyncio.sleep(0.05)
            assert stats["renders_completed"] == 1
            assert stats["requests"].get("retrieve_video", 0) == 0


class TestContentAvailability:
    async def test_content_is_404_before_completion(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            video = await create(client)
            error = assert_openai_error(await client.get(f"/v1/videos/{video['id']}/content"), 404)
            assert error["message"].startswith("Video is not ready yet")

    async def test_content_is_404_after_expiry(self, asgi_sim: Factory, create: Create, poll: Poll) -> None:
        async with asgi_sim() as client:
            video = await create(client)
            await poll(client, video["id"])
            assert (await client.get(f"/v1/videos/{video['id']}/content?variant=thumbnail")).status_code == 200
            expired = await client.post(f"/_sim/videos/{video['id']}/expire")
            assert expired.json()["expires_at"] <= time.time()
            error = assert_openai_error(await client.get(f"/v1/videos/{video['id']}/content"), 404)
            assert "expired" in error["message"]

    async def test_zero_ttl_set_at_runtime_expires_on_completion(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim() as client:
            config = await client.patch("/_sim/config", json={"ttl_seconds": 0})
            assert config.json()["ttl_seconds"] == 0
            video = await create(client)
            done = await poll(client, video["id"])
            assert done["expires_at"] == done["completed_at"]
            assert_openai_error(await client.get(f"/v1/videos/{video['id']}/content"), 404)

    async def test_unknown_variant_is_400(self, asgi_sim: Factory, create: Create, poll: Poll) -> None:
        async with asgi_sim() as client:
            video = await create(client)
            await poll(client, video["id"])
            error = assert_openai_error(await client.get(f"/v1/videos/{video['id']}/content?variant=gif"), 400)
            assert error["param"] == "variant"


class TestListDeleteRemix:
    async def test_list_pages_in_both_orders(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            ids = [(await create(client, prompt=f"clip {n}"))["id"] for n in range(5)]
            first = (await client.get("/v1/videos", params={"limit": 2})).json()
            assert first["object"] == "list"
            assert [v["id"] for v in first["data"]] == [ids[4], ids[3]]
            assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
            seen = [v["id"] for v in first["data"]]
            after = first["last_id"]
            while True:
                page = (await client.get("/v1/videos", params={"limit": 2, "after": after})).json()
                seen += [v["id"] for v in page["data"]]
                if not page["has_more"]:
                    break
                after = page["last_id"]
            assert seen == ids[::-1]
            asc = (await client.get("/v1/videos", params={"order": "asc", "after": ids[1], "limit": 2})).json()
            assert [v["id"] for v in asc["data"]] == [ids[2], ids[3]] and asc["has_more"] is True
            default = (await client.get("/v1/videos")).json()
            assert len(default["data"]) == 5 and default["has_more"] is False

    async def test_list_refuses_out_of_range_limit_and_bad_order(self, asgi_sim: Factory) -> None:
        async with asgi_sim() as client:
            assert assert_openai_error(await client.get("/v1/videos?limit=101"), 400)["param"] == "limit"
            assert assert_openai_error(await client.get("/v1/videos?order=sideways"), 400)["param"] == "order"
            empty = (await client.get("/v1/videos?limit=0")).json()
            assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}

    async def test_delete_answers_deleted_object_then_404(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            video = await create(client)
            deleted = await client.delete(f"/v1/videos/{video['id']}")
            assert deleted.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
            assert_openai_error(await client.get(f"/v1/videos/{video['id']}"), 404)
            assert_openai_error(await client.delete(f"/v1/videos/{video['id']}"), 404)
            assert (await client.get("/v1/videos")).json()["data"] == []

    async def test_remix_copies_source_settings_once_source_completed(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim(queue_seconds=0.3) as client:
            source = await create(client, size="1792x1024", seconds="8", model="sora-2-pro")
            early = await client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "brighter"})
            assert assert_openai_error(early, 400)["param"] == "video_id"
            await poll(client, source["id"])
            remix = await client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "brighter"})
            assert remix.status_code == 200, remix.text
            video = remix.json()
            assert video["remixed_from_video_id"] == source["id"] and video["id"] != source["id"]
            assert (video["model"], video["size"], video["seconds"], video["prompt"]) == (
                "sora-2-pro", "1792x1024", "8", "brighter",
            )  # fmt: skip
            unknown = await client.post("/v1/videos/video_nope/remix", json={"prompt": "x"})
            assert_openai_error(unknown, 404)
