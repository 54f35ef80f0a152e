"""A `kind: fal` profile in process: the facade in front of the fal queue simulator, real Postgres and S3.

What the facade refuses before any upstream call, how a render and a content-policy refusal reach the caller,
the archive (the MP4 from fal's CDN stand-in, thumbnail and spritesheet derived from it), the cancel of a
queued render on delete, and the profile's webhook receiver: the simulator's Ed25519-signed delivery, checked
against the simulator's JWKS fetched over HTTP. The simulator runs on a loopback socket in this event loop
(the receiver fetches the key set over real HTTP); its deliveries reach the gateway app in process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from app.archive import reconciler
from app.archive import service as archive_service
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core.config import S3Settings, Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Asset, Video, VideoStatus, WebhookEvent
from app.simulator.fal import create_fal_simulator_app
from app.upstream.router import UpstreamRouter
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import make_settings
from tests.support.worker import worker_settings

FAL_KEY = "fal-key"
VEO = "fal-ai/veo3.1"
KLING = "fal-ai/kling-video/v2.5-turbo/pro/text-to-video"
# Listed by the profile, but of no family the adapter maps: refused by the adapter, never sent.
UNMAPPED = "fal-ai/sora-2/text-to-video"


class Deferred(httpx.AsyncBaseTransport):
    """The simulator's way to the gateway, which is built after the simulator."""

    target: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.target is not None
        return await self.target.handle_async_request(request)


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port, in this event loop (lifespan included)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", ws="none"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class FalStack:
    settings: Settings
    api: httpx.AsyncClient
    simulator: httpx.AsyncClient
    database: Database
    context: JobContext

    async def create(self, **fields: str) -> httpx.Response:
        parts = {"prompt": "a heron at dawn", "model": VEO, "seconds": "4", "size": "1280x720", **fields}
        return await self.api.post("/v1/videos", files={name: (None, value) for name, value in parts.items()})

    async def creates(self) -> int:
        count: int = (await self.simulator.get("/_sim/stats")).json()["create_requests"]
        return count

    async def settle(self, video_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            video: dict[str, Any] = (await self.api.get(f"/v1/videos/{video_id}")).json()
            if video["status"] in ("completed", "failed"):
                return video
            assert time.monotonic() < deadline, video
            await asyncio.sleep(0.1)

    async def video(self, video_id: str) -> Video:
        async with self.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            return video

    async def webhook_event(self, webhook_id: str, *, timeout: float = 10.0) -> WebhookEvent:
        deadline = time.monotonic() + timeout
        while True:
            async with self.database.sessionmaker() as session:
                statement = select(WebhookEvent).where(WebhookEvent.webhook_id == webhook_id)
                event = (await session.execute(statement)).scalar_one_or_none()
            if event is not None:
                return event
            assert time.monotonic() < deadline, f"no webhook {webhook_id} was recorded"
            await asyncio.sleep(0.05)


@pytest.fixture
async def fal(
    database_url: str, s3_settings: S3Settings, new_caller_key: NewCaller, database: Database
) -> AsyncIterator[FalStack]:
    to_gateway = Deferred()
    simulator_app = create_fal_simulator_app(
        SimulatorSettings(
            api_key=FAL_KEY,
            queue_seconds=0.2,
            render_seconds=0.6,
            fps=2,
            webhook_retry_base_seconds=0.05,
            webhook_max_attempts=3,
        ),
        webhook_transport=to_gateway,
    )
    async with served(simulator_app) as simulator_url:
        settings = make_settings(database_url).model_copy(
            update={
                "s3": s3_settings,
                "worker": worker_settings(),
                "upstreams": {
                    "fal": UpstreamProfile(
                        kind="fal",
                        base_url=simulator_url,
                        api_key=FAL_KEY,
                        models=[VEO, KLING, UNMAPPED],
                        webhook_url="http://gateway.test/webhooks/fal",
                        webhook_jwks_url=f"{simulator_url}/.well-known/jwks.json",
                        # The simulator's CDN stand-in is its own host; plain http is for dev mode only.
                        content_redirect_hosts=["127.0.0.1"],
                        retry_base_seconds=0.01,
                        retry_max_seconds=0.05,
                    )
                },
            }
        )
        app = create_app(settings)
        to_gateway.target = httpx.ASGITransport(app=app)
        upstreams = UpstreamRouter(settings)
        storage = ArchiveStorage(s3_settings)
        await storage.ensure_bucket()
        async with (
            app.router.lifespan_context(app),
            gateway_client(app, await new_caller_key()) as api,
            httpx.AsyncClient(base_url=simulator_url, headers={"authorization": f"Key {FAL_KEY}"}) as simulator,
        ):
            context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
            yield FalStack(settings, api, simulator, database, context)
        await upstreams.aclose()
        storage.close()


class TestRefusedBeforeAnyUpstreamCall:
    @pytest.mark.parametrize(
        ("fields", "param", "listed"),
        [
            ({"seconds": "5"}, "seconds", "'4', '6', '8'"),
            ({"model": KLING, "seconds": "8", "size": "1920x1080"}, "seconds", "'5', '10'"),
            ({"model": KLING, "seconds": "5", "size": "1280x720"}, "size", "'1920x1080'"),
            ({"model": UNMAPPED}, "model", "fal-ai/veo3.1"),
        ],
    )
    async def test_what_the_table_cannot_map_is_a_400_naming_the_param(
        self, fal: FalStack, fields: dict[str, str], param: str, listed: str
    ) -> None:
        before = await fal.creates()
        response = await fal.create(**fields)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error")
        assert listed in error["message"]
        assert await fal.creates() == before
        assert (await fal.api.get("/v1/videos")).json()["data"] == []

    async def test_an_image_for_a_text_endpoint_names_input_reference(self, fal: FalStack) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 36), "navy").save(buffer, format="PNG")
        data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        body = {"prompt": "p", "model": VEO, "seconds": "4", "size": "1280x720"}
        response = await fal.api.post("/v1/videos", json={**body, "input_reference": {"image_url": data_url}})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "input_reference"
        assert "fal-ai/veo3.1/image-to-video" in response.json()["error"]["message"]


class TestEndings:
    async def test_a_render_completes_and_is_archived_with_images_derived_from_the_mp4(self, fal: FalStack) -> None:
        created = await fal.create()
        assert created.status_code == 200, created.text
        video = created.json()
        assert (video["model"], video["seconds"], video["size"]) == (VEO, "4", "1280x720")
        settled = await fal.settle(video["id"])
        assert settled["status"] == "completed" and settled["progress"] == 100
        # fal documents no retention: a day from when the gateway saw the result.
        assert 24 * 3600 - 5 <= settled["expires_at"] - settled["completed_at"] <= 24 * 3600
        upstream_id = (await fal.video(video["id"])).upstream_id
        assert upstream_id is not None and upstream_id.startswith("fal-ai/veo3.1:")
        request_id = upstream_id.split(":", 1)[1]
        result = (await fal.simulator.get(f"/fal-ai/veo3.1/requests/{request_id}")).json()
        mp4 = (await fal.simulator.get(result["video"]["url"])).content

        async with fal.database.sessionmaker.begin() as session:
            row = await session.get(Video, video["id"])
            assert row is not None
            await archive_service.enqueue_sync(session, video=row, settings=fal.settings.worker)
        await Worker(fal.context, worker_id="fal-test").run_until_idle()
        async with fal.database.sessionmaker() as session:
            rows = (await session.execute(select(Asset).where(Asset.video_id == video["id"]))).scalars().all()
        archived = {row.variant: row for row in rows}
        assert {variant: row.state for variant, row in archived.items()} == {
            "video": "archived",
            "thumbnail": "archived",
            "spritesheet": "archived",
        }
        assert archived["video"].sha256 == hashlib.sha256(mp4).hexdigest()
        thumbnail = await fal.api.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
        assert thumbnail.status_code == 200
        with Image.open(io.BytesIO(thumbnail.content)) as image:
            assert (image.format, image.size) == ("WEBP", (1280, 720))
        # fal's file goes: the archive still serves it.
        assert (await fal.simulator.post(f"/_sim/requests/{request_id}/expire")).status_code == 200
        served = await fal.api.get(f"/v1/videos/{video['id']}/content")
        assert hashlib.sha256(served.content).hexdigest() == archived["video"].sha256

    async def test_a_content_policy_refusal_fails_moderation_blocked_with_fals_reason(self, fal: FalStack) -> None:
        video = (await fal.create(prompt="something forbidden")).json()
        settled = await fal.settle(video["id"])
        assert settled["status"] == "failed"
        assert settled["error"]["code"] == "moderation_blocked"
        assert "content checker" in settled["error"]["message"]
        content = await fal.api.get(f"/v1/videos/{video['id']}/content")
        assert content.status_code == 404

    async def test_deleting_a_queued_render_cancels_it_at_fal(self, fal: FalStack) -> None:
        await fal.simulator.patch("/_sim/config", json={"queue_seconds": 30})
        video = (await fal.create()).json()
        deleted = await fal.api.delete(f"/v1/videos/{video['id']}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        request_id = str((await fal.video(video["id"])).upstream_id).split(":", 1)[1]
        status = (await fal.simulator.get(f"/fal-ai/veo3.1/requests/{request_id}/status")).json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "request_cancelled"


class TestWebhooks:
    async def test_the_simulators_signed_delivery_is_verified_with_its_jwks_and_recorded_once(
        self, fal: FalStack
    ) -> None:
        await fal.simulator.patch("/_sim/faults", json={"webhook_duplicate": True})
        video = (await fal.create()).json()
        upstream_id = str((await fal.video(video["id"])).upstream_id)
        request_id = upstream_id.split(":", 1)[1]
        event = await fal.webhook_event(f"{request_id}:OK")
        # Stored under the video's whole upstream id, which the receiver found from the request id alone.
        assert (event.upstream_profile, event.event_type, event.upstream_video_id) == ("fal", "OK", upstream_id)
        deadline = time.monotonic() + 10
        while True:
            deliveries = (await fal.simulator.get("/_sim/webhooks")).json()["data"]
            if len(deliveries) == 2 and all(delivery["status"] == "delivered" for delivery in deliveries):
                break  # both copies answered 2xx: the second as a duplicate
            assert time.monotonic() < deadline, deliveries
            await asyncio.sleep(0.05)
        async with fal.database.sessionmaker() as session:
            rows = (
                (await session.execute(select(WebhookEvent).where(WebhookEvent.upstream_video_id == upstream_id)))
                .scalars()
                .all()
            )
        assert len(rows) == 1

    async def test_the_delivery_queues_a_sync_of_its_video(self, fal: FalStack) -> None:
        video = (await fal.create()).json()
        request_id = str((await fal.video(video["id"])).upstream_id).split(":", 1)[1]
        event = await fal.webhook_event(f"{request_id}:OK")
        assert (event.outcome, event.video_id) == ("enqueued", video["id"])
        async with fal.database.sessionmaker() as session:
            syncs = (
                await session.execute(
                    select(ArchiveJob).where(ArchiveJob.video_id == video["id"], ArchiveJob.kind == "sync")
                )
            ).scalars()
            assert list(syncs)


class TestCutOffCreates:
    async def test_a_create_cut_off_before_fal_answered_is_adopted_by_the_reference_in_its_webhook_url(
        self, fal: FalStack
    ) -> None:
        # fal has no list of requests: without the reference, such a create could only be settled as unknown.
        video_id = (await fal.create(prompt=f"cut off {time.time_ns()}")).json()["id"]
        upstream_id = str((await fal.video(video_id)).upstream_id)
        request_id = upstream_id.split(":", 1)[1]
        age = fal.settings.worker.unsubmitted_after_seconds + 60
        async with fal.database.transaction() as session:  # what a SIGKILL before the answer leaves
            video = await session.get(Video, video_id)
            assert video is not None
            video.upstream_id, video.status, video.progress = None, VideoStatus.QUEUED, 0
            video.created_at = video.submitted_at = datetime.now(UTC) - timedelta(seconds=age)
        orphan = await fal.webhook_event(f"{request_id}:OK")
        assert (orphan.outcome, orphan.upstream_video_id, orphan.video_id) == ("orphan", request_id, video_id)

        report = await reconciler.reconcile_once(fal.context)
        assert (report.submissions_adopted, report.submissions_settled) == (1, 0)
        assert (await fal.video(video_id)).upstream_id == upstream_id
        await Worker(fal.context, worker_id="fal-test").run_until_idle()
        assert (await fal.settle(video_id))["status"] == "completed"
        assert (await fal.api.get(f"/v1/videos/{video_id}/content")).status_code == 200
