"""API bursts and content faults; truncation and redirects over a real uvicorn socket."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from PIL import Image

Factory = Callable[..., Any]
Poll = Callable[..., Awaitable[dict[str, Any]]]
Create = Callable[..., Awaitable[dict[str, Any]]]


async def completed_video(client: httpx.AsyncClient, create: Create, poll: Poll) -> str:
    video = await create(client)
    await poll(client, video["id"])
    video_id: str = video["id"]
    return video_id


class TestBursts:
    async def test_rate_limit_burst_answers_429_then_recovers_and_counts_creates(
        self, asgi_sim: Factory, create: Create
    ) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            await client.put("/_sim/faults", json={"rate_limit_next": 2, "rate_limit_retry_after_seconds": 3})
            for _ in range(2):
                limited = await client.post("/v1/videos", files={"prompt": (None, "x")})
                assert limited.status_code == 429
                assert limited.headers["retry-after"] == "3"
                assert limited.json()["error"]["code"] == "rate_limit_exceeded"
            await create(client)
            stats = (await client.get("/_sim/stats")).json()
            assert (stats["create_requests"], stats["videos_created"]) == (3, 1)

    async def test_server_error_burst_hits_only_the_listed_route(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            video = await create(client)
            await client.patch(
                "/_sim/faults",
                json={"server_error_next": 1, "server_error_status": 503, "burst_routes": ["retrieve_video"]},
            )
            assert (await client.get("/v1/videos")).status_code == 200
            failed = await client.get(f"/v1/videos/{video['id']}")
            assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
            assert (await client.get(f"/v1/videos/{video['id']}")).status_code == 200

    async def test_invalid_fault_values_are_refused(self, asgi_sim: Factory) -> None:
        async with asgi_sim() as client:
            bad = await client.patch("/_sim/faults", json={"server_error_status": 418})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "server_error_status"
            unknown = await client.put("/_sim/faults", json={"explode": True})
            assert unknown.status_code == 400

    async def test_reset_forgets_videos_stats_and_faults(self, asgi_sim: Factory, create: Create) -> None:
        async with asgi_sim(queue_seconds=60) as client:
            video = await create(client)
            await client.patch("/_sim/faults", json={"rate_limit_next": 5})
            await client.patch("/_sim/config", json={"ttl_seconds": 1})
            assert (await client.post("/_sim/reset")).json() == {"reset": True}
            assert (await client.get("/_sim/faults")).json()["rate_limit_next"] == 0
            assert (await client.get("/_sim/config")).json()["ttl_seconds"] == 3600
            assert (await client.get(f"/v1/videos/{video['id']}")).status_code == 404
            assert (await client.get("/_sim/stats")).json()["create_requests"] == 0


class TestContentFaults:
    async def test_html_error_page_is_served_with_200_for_the_counted_responses(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with asgi_sim() as client:
            video_id = await completed_video(client, create, poll)
            await client.patch("/_sim/faults", json={"content_html_error": True, "content_faults_remaining": 1})
            page = await client.get(f"/v1/videos/{video_id}/content")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html") and b"<html" in page.content
            real = await client.get(f"/v1/videos/{video_id}/content")
            assert real.headers["content-type"] == "video/mp4" and real.content[4:8] == b"ftyp"

    async def test_synthetic_asset_has_promised_size_and_mp4_header(
        self, asgi_sim: Factory, create: Create, poll: Poll
    ) -> None:
        size = 3_000_000
        async with asgi_sim() as client:
            await client.patch("/_sim/faults", json={"synthetic_asset_bytes": size})
            video_id = await completed_video(client, create, poll)
            body = await client.get(f"/v1/videos/{video_id}/content")
            assert int(body.headers["content-length"]) == len(body.content) == size
            assert body.content[4:8] == b"ftyp"
            assert struct.unpack(">I4s", body.content[32:40]) == (size - 32, b"mdat")
            thumb = await client.get(f"/v1/videos/{video_id}/content?variant=thumbnail")
            with Image.open(io.BytesIO(thumb.content)) as image:
                assert image.format == "WEBP" and image.size == (720, 1280)

    async def test_throttle_limits_the_download_rate(self, asgi_sim: Factory, create: Create, poll: Poll) -> None:
        async with asgi_sim(synthetic_asset_bytes=20_000) as client:
            video_id = await completed_video(client, create, poll)
            await client.patch("/_sim/faults", json={"content_bytes_per_second": 40_000})
            started = time.monotonic()
            body = await client.get(f"/v1/videos/{video_id}/content")
            assert len(body.content) == 20_000
            assert time.monotonic() - started >= 0.45


class TestContentOverSocket:
    async def test_truncated_body_breaks_the_read_after_n_bytes(
        self, real_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with real_sim(synthetic_asset_bytes=500_000) as client:
            video_id = await completed_video(client, create, poll)
            await client.patch("/_sim/faults", json={"content_truncate_after_bytes": 100_000})
            received = 0
            async with client.stream("GET", f"/v1/videos/{video_id}/content") as response:
                assert response.headers["content-length"] == "500000"
                with pytest.raises(httpx.RemoteProtocolError):
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
            assert received == 100_000

    async def test_cross_host_redirect_serves_the_same_bytes(
        self, real_sim: Factory, create: Create, poll: Poll
    ) -> None:
        async with real_sim() as client:
            video_id = await completed_video(client, create, poll)
            direct = await client.get(f"/v1/videos/{video_id}/content")
            await client.patch("/_sim/faults", json={"content_redirect": True, "content_redirect_host": "localhost"})
            redirect = await client.get(f"/v1/videos/{video_id}/content")
            assert redirect.status_code == 302
            location = httpx.URL(redirect.headers["location"])
            assert location.host == "localhost" and location.port == client.base_url.port
            # The target carries its own token; it must work with no Authorization header at all.
            async with httpx.AsyncClient(follow_redirects=True) as anonymous:
                followed = await anonymous.get(location)
            assert followed.status_code == 200
            assert followed.headers["content-type"] == "video/mp4"
            assert followed.content == direct.content
            forged = location.copy_set_param("token", "wrong")
            async with httpx.AsyncClient() as anonymous:
                assert (await anonymous.get(forged)).status_code == 403

    async def test_lifespan_runs_lifecycle_under_uvicorn(self, real_sim: Factory, create: Create, poll: Poll) -> None:
        async with real_sim() as client:
            video = await create(client)
            assert (await poll(client, video["id"]))["status"] == "completed"
