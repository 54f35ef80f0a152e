"""A `kind: replicate` profile in process: the facade in front of the Replicate simulator, real Postgres and S3.

What the facade refuses before any upstream call, how each ending of a prediction reaches the caller, and the
profile's webhook receiver. The gateway is also served on a loopback socket, so the simulator's per-request
webhook (the create's `webhook`, Standard Webhooks-signed) really reaches `/webhooks/rep`; the worker then
re-reads the prediction, archives the MP4 and derives the thumbnail and spritesheet from it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core.config import S3Settings, Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Asset, Video, WebhookEvent
from app.simulator.replicate import create_replicate_simulator_app
from app.upstream.reference import PARAM as REFERENCE_PARAM
from app.upstream.router import UpstreamRouter
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.webhooks import signed
from tests.support.worker import worker_settings

REPLICATE_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
TOKEN = "r8_gateway_test_token"
VEO = "google/veo-3"
WAN = "wan-video/wan-2.2-t2v-fast"
KLING = "kwaivgi/kling-v2.1"


@dataclass
class Replicate:
    settings: Settings
    api: httpx.AsyncClient
    simulator: httpx.AsyncClient  # the simulator's API and /_sim, with the token
    database: Database
    context: JobContext
    webhook_url: str

    def worker(self) -> Worker:
        return Worker(self.context, worker_id="replicate-test-worker")

    async def creates(self) -> int:
        count: int = (await self.simulator.get("/_sim/stats")).json()["create_requests"]
        return count

    async def create(self, **fields: str) -> httpx.Response:
        parts = {"prompt": "a fox in the snow", "model": VEO, "seconds": "4", "size": "1280x720", **fields}
        return await self.api.post("/v1/videos", files={name: (None, value) for name, value in parts.items()})

    async def settle(self, video_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            video: dict[str, Any] = (await self.api.get(f"/v1/videos/{video_id}")).json()
            if video["status"] in ("completed", "failed"):
                return video
            assert time.monotonic() < deadline, video
            await asyncio.sleep(0.05)

    async def upstream_id(self, video_id: str) -> str:
        async with self.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None and video.upstream_id is not None
            return video.upstream_id

    async def stored_event(self, upstream_id: str, *, timeout: float = 20.0) -> WebhookEvent:
        """The first delivery recorded about `upstream_id` (waits for the simulator's webhook to arrive)."""
        deadline = time.monotonic() + timeout
        while True:
            async with self.database.sessionmaker() as session:
                found = (
                    (await session.execute(select(WebhookEvent).where(WebhookEvent.upstream_video_id == upstream_id)))
                    .scalars()
                    .first()
                )
            if found is not None:
                return found
            assert time.monotonic() < deadline, "no webhook was recorded"
            await asyncio.sleep(0.05)

    async def assets(self, video_id: str) -> dict[str, Asset]:
        async with self.database.sessionmaker() as session:
            rows = (await session.execute(select(Asset).where(Asset.video_id == video_id))).scalars().all()
            return {row.variant: row for row in rows}


@pytest.fixture
async def replicate(
    database_url: str, s3_settings: S3Settings, new_caller_key: NewCaller, database: Database
) -> AsyncIterator[Replicate]:
    # The gateway's socket first: its address is the webhook URL every create sends.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    webhook_url = f"http://127.0.0.1:{listener.getsockname()[1]}/webhooks/rep"
    simulator_app: FastAPI = create_replicate_simulator_app(
        SimulatorSettings(
            api_key=TOKEN,
            queue_seconds=0.2,
            render_seconds=0.8,
            fps=2,
            webhook_secret=REPLICATE_SECRET,
            webhook_retry_base_seconds=0.2,
            webhook_max_attempts=3,
        )
    )
    settings = make_settings(database_url).model_copy(
        update={
            "s3": s3_settings,
            "worker": worker_settings(),
            "upstreams": {
                "rep": UpstreamProfile(
                    kind="replicate",
                    base_url="http://replicate.test",
                    api_key=TOKEN,
                    models=[VEO, WAN, KLING],
                    webhook_secrets=REPLICATE_SECRET,
                    webhook_url=webhook_url,
                    retry_base_seconds=0.01,
                    retry_max_seconds=0.05,
                )
            },
        }
    )
    transport = httpx.ASGITransport(app=simulator_app)
    app = create_app(settings, upstream_transport=transport)
    upstreams = UpstreamRouter(settings, transport=transport)
    storage = ArchiveStorage(s3_settings)
    await storage.ensure_bucket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", ws="none", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    deadline = time.monotonic() + 10
    while not server.started:
        assert not serving.done() and time.monotonic() < deadline, "the gateway did not start"
        await asyncio.sleep(0.01)
    simulator = httpx.AsyncClient(
        transport=transport, base_url="http://replicate.test", headers={"authorization": f"Bearer {TOKEN}"}
    )
    try:
        async with (
            simulator_app.router.lifespan_context(simulator_app),
            gateway_client(app, await new_caller_key()) as api,
        ):
            context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
            yield Replicate(settings, api, simulator, database, context, webhook_url)
    finally:
        server.should_exit = True
        await serving
        listener.close()
        await simulator.aclose()
        await upstreams.aclose()
        storage.close()


def png_data_url(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "navy").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class TestRefusedBeforeAnyUpstreamCall:
    @pytest.mark.parametrize(
        ("fields", "param", "listed"),
        [
            ({"seconds": "12"}, "seconds", "'4', '6', '8'"),
            ({"size": "1792x1024"}, "size", "'1280x720', '720x1280'"),
            ({"size": "1920x1080", "seconds": "4"}, "seconds", "'8'"),
            ({"model": WAN, "seconds": "8", "size": "832x480"}, "seconds", "'5'"),
            ({"model": KLING, "seconds": "5"}, "input_reference", "required"),
        ],
    )
    async def test_what_the_model_cannot_take_is_a_400_naming_the_param(
        self, replicate: Replicate, fields: dict[str, str], param: str, listed: str
    ) -> None:
        before = await replicate.creates()
        response = await replicate.create(**fields)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error")
        assert listed in error["message"]
        assert await replicate.creates() == before
        assert (await replicate.api.get("/v1/videos")).json()["data"] == []

    async def test_an_image_for_a_text_only_model_is_refused_before_it_is_fetched(self, replicate: Replicate) -> None:
        before = await replicate.creates()
        body = {"prompt": "p", "model": WAN, "seconds": "5", "size": "832x480"}
        for reference in ({"image_url": "https://images.example.test/a.png"}, {"image_url": png_data_url((832, 480))}):
            response = await replicate.api.post("/v1/videos", json={**body, "input_reference": reference})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "input_reference"
        assert await replicate.creates() == before

    async def test_an_unlisted_model_is_refused_naming_model(self, replicate: Replicate) -> None:
        before = await replicate.creates()
        response = await replicate.create(model="bytedance/seedance-1-pro", seconds="5")
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "model"
        assert await replicate.creates() == before


class TestRenders:
    async def test_the_webhook_brings_the_worker_which_archives_the_mp4_and_derives_the_images(
        self, replicate: Replicate
    ) -> None:
        created = await replicate.create()
        assert created.status_code == 200, created.text
        video = created.json()
        assert video["id"].startswith("video_") and video["model"] == VEO
        upstream_id = await replicate.upstream_id(video["id"])

        # Replicate's own delivery (the prediction object, signed) reaches the receiver and queues a re-read.
        event = await replicate.stored_event(upstream_id)
        assert (event.upstream_profile, event.event_type, event.outcome) == ("rep", "prediction.succeeded", "enqueued")
        assert json.loads(event.body)["id"] == upstream_id
        await replicate.worker().run_until_idle()

        archived = await replicate.assets(video["id"])
        assert {variant: asset.state for variant, asset in archived.items()} == {
            "video": "archived",
            "thumbnail": "archived",
            "spritesheet": "archived",
        }
        # The worker fetched the file without the token (the test's own fetch below sends it, so count first).
        requests = (await replicate.simulator.get("/_sim/stats")).json()["requests"]
        assert requests["serve_file"] == 1
        assert "serve_file_with_authorization" not in requests
        assert "create_prediction_prefer_wait" not in requests
        prediction = (await replicate.simulator.get(f"/v1/predictions/{upstream_id}")).json()
        mp4 = (await replicate.simulator.get(prediction["output"])).content
        assert archived["video"].sha256 == hashlib.sha256(mp4).hexdigest()
        for variant, content_type in (
            ("video", "video/mp4"),
            ("thumbnail", "image/webp"),
            ("spritesheet", "image/jpeg"),
        ):
            served = await replicate.api.get(f"/v1/videos/{video['id']}/content", params={"variant": variant})
            assert served.status_code == 200
            assert served.headers["content-type"] == content_type
            assert hashlib.sha256(served.content).hexdigest() == archived[variant].sha256

        settled = await replicate.settle(video["id"])
        assert (settled["status"], settled["progress"]) == ("completed", 100)
        # Replicate's window: an hour after the prediction ended.
        assert 3500 <= settled["expires_at"] - settled["created_at"] <= 3700

        # Only the `completed` event was asked for, and it was delivered to our receiver, the URL carrying the
        # video's reference.
        deliveries = (await replicate.simulator.get("/_sim/webhooks")).json()["data"]
        assert [(d["event"], d["status"]) for d in deliveries] == [("completed", "delivered")]
        delivered_to = httpx.URL(deliveries[0]["url"])
        assert delivered_to.copy_remove_param(REFERENCE_PARAM) == replicate.webhook_url
        assert delivered_to.params[REFERENCE_PARAM].startswith(video["id"] + ".")

        # Replicate drops the data after the hour: the archive still serves every variant.
        assert (await replicate.simulator.post(f"/_sim/predictions/{upstream_id}/expire")).status_code == 200
        again = await replicate.api.get(f"/v1/videos/{video['id']}/content", params={"variant": "video"})
        assert hashlib.sha256(again.content).hexdigest() == archived["video"].sha256

    async def test_a_moderation_failure_is_failed_moderation_blocked_with_replicates_reason(
        self, replicate: Replicate
    ) -> None:
        video = (await replicate.create(prompt="something forbidden")).json()
        settled = await replicate.settle(video["id"])
        assert settled["status"] == "failed"
        assert settled["error"]["code"] == "moderation_blocked"
        assert "flagged as sensitive" in settled["error"]["message"]
        assert (await replicate.api.get(f"/v1/videos/{video['id']}/content")).status_code == 404

    async def test_a_model_error_is_failed_with_replicates_text(self, replicate: Replicate) -> None:
        video = (await replicate.create(prompt="sim:error please")).json()
        settled = await replicate.settle(video["id"])
        assert (settled["status"], settled["error"]["code"]) == ("failed", "upstream_failed")
        assert "Prediction failed" in settled["error"]["message"]

    async def test_an_image_goes_to_kling_as_its_start_image(self, replicate: Replicate) -> None:
        body = {"prompt": "a heron", "model": KLING, "seconds": "5", "size": "1280x720"}
        response = await replicate.api.post(
            "/v1/videos", json={**body, "input_reference": {"image_url": png_data_url((1280, 720))}}
        )
        assert response.status_code == 200, response.text
        upstream_id = await replicate.upstream_id(response.json()["id"])
        prediction = (await replicate.simulator.get(f"/v1/predictions/{upstream_id}")).json()
        assert prediction["input"]["start_image"].startswith("data:image/png;base64,")
        assert (prediction["input"]["mode"], prediction["input"]["duration"]) == ("standard", 5)

    async def test_remix_is_refused_and_delete_cancels_a_running_prediction(self, replicate: Replicate) -> None:
        await replicate.simulator.patch("/_sim/config", json={"queue_seconds": 60})
        video = (await replicate.create()).json()
        remix = await replicate.api.post(f"/v1/videos/{video['id']}/remix", json={"prompt": "again"})
        assert remix.status_code == 400
        assert remix.json()["error"]["code"] == "unsupported_by_provider"
        upstream_id = await replicate.upstream_id(video["id"])
        deleted = await replicate.api.delete(f"/v1/videos/{video['id']}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        prediction = (await replicate.simulator.get(f"/v1/predictions/{upstream_id}")).json()
        assert prediction["status"] == "canceled"


class TestWebhooks:
    async def test_a_signed_prediction_queues_a_sync_of_that_video_once(
        self, replicate: Replicate, database: Database
    ) -> None:
        await replicate.simulator.patch("/_sim/config", json={"queue_seconds": 60})
        ids = [(await replicate.create()).json()["id"] for _ in range(2)]
        upstream_id = await replicate.upstream_id(ids[0])
        prediction = (await replicate.simulator.get(f"/v1/predictions/{upstream_id}")).json()
        body, headers = signed(REPLICATE_SECRET, {**prediction, "status": "succeeded"})
        response = await replicate.api.post("/webhooks/rep", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["duplicate"] is False
        again = await replicate.api.post("/webhooks/rep", content=body, headers=headers)
        assert again.json()["duplicate"] is True
        async with database.sessionmaker() as session:
            syncs = (
                await session.execute(select(ArchiveJob).where(ArchiveJob.video_id.in_(ids), ArchiveJob.kind == "sync"))
            ).scalars()
            assert [job.video_id for job in syncs] == [ids[0]]
            stored = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"]))
            ).scalar_one()
            assert (stored.upstream_profile, stored.event_type, stored.outcome, stored.upstream_video_id) == (
                "rep",
                "prediction.succeeded",
                "enqueued",
                upstream_id,
            )

    async def test_a_running_prediction_is_recorded_and_ignored(self, replicate: Replicate, database: Database) -> None:
        await replicate.simulator.patch("/_sim/config", json={"queue_seconds": 60})
        video_id = (await replicate.create()).json()["id"]
        prediction = (await replicate.simulator.get(f"/v1/predictions/{await replicate.upstream_id(video_id)}")).json()
        body, headers = signed(REPLICATE_SECRET, prediction)  # status "starting": a `start` event
        assert (await replicate.api.post("/webhooks/rep", content=body, headers=headers)).status_code == 200
        async with database.sessionmaker() as session:
            stored = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"]))
            ).scalar_one()
            assert (stored.event_type, stored.outcome) == ("prediction.starting", "ignored")

    async def test_a_forged_signature_is_401_and_nothing_is_stored(
        self, replicate: Replicate, database: Database
    ) -> None:
        body, headers = signed(TEST_WEBHOOK_SECRET, {"id": "gm3qorzdhgbfurvjtvhg6dckhu", "status": "succeeded"})
        response = await replicate.api.post("/webhooks/rep", content=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"
        async with database.sessionmaker() as session:
            stored = await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"]))
            assert stored.first() is None

    async def test_a_body_that_is_not_a_prediction_is_400(self, replicate: Replicate) -> None:
        body, headers = signed(REPLICATE_SECRET, {"type": "video.completed", "data": {"id": "video_1"}})
        response = await replicate.api.post("/webhooks/rep", content=body, headers=headers)
        assert response.status_code == 400
