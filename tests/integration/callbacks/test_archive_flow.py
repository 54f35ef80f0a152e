"""The whole flow: create with a callback_url → render (simulator) → the worker archives to S3 → the
sender delivers a signed `video.archived` that a real receiver verifies; a failed render sends `video.failed`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from app.archive import service as archive_service
from app.archive.jobs import JobContext
from app.archive.worker import Worker
from app.callbacks import delivery
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.models import Video
from tests.support.callbacks import Receiver, callback_settings
from tests.support.gateway import NewCaller, gateway_client
from tests.support.worker import ArchiveStack


@dataclass
class FlowStack:
    settings: Settings
    api: httpx.AsyncClient
    simulator: httpx.AsyncClient
    database: Database
    context: JobContext

    async def wait_upstream_finished(self, video_id: str, *, within: float = 20.0) -> None:
        async with self.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None and video.upstream_id is not None
            upstream_id = video.upstream_id
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = (await self.simulator.get(f"/v1/videos/{upstream_id}")).json()["status"]
            if status in ("completed", "failed"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("upstream did not finish")

    async def archive(self, video_id: str) -> None:
        """What a webhook does (queue a sync), then the worker until the queue is idle."""
        async with self.database.sessionmaker.begin() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            await archive_service.enqueue_sync(session, video=video, settings=self.settings.worker)
        await Worker(self.context, worker_id="callbacks-test").run_until_idle()


@pytest.fixture
async def flow(
    archive_stack: ArchiveStack, simulator_app: FastAPI, new_caller_key: NewCaller
) -> AsyncIterator[FlowStack]:
    """The worker stack of `tests/integration/worker`, with callbacks allowed to the local receiver."""
    settings = archive_stack.settings.model_copy(update={"callbacks": callback_settings()})
    app = create_app(settings, upstream_transport=httpx.ASGITransport(app=simulator_app))
    context = dataclasses.replace(archive_stack.context, settings=settings)
    async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as api:
        yield FlowStack(settings, api, archive_stack.simulator, archive_stack.database, context)


async def deliver_until_received(flow: FlowStack, receiver: Receiver, *, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not receiver.requests:
        assert time.monotonic() < deadline, "no callback arrived"
        await delivery.deliver_due(flow.context)
        await asyncio.sleep(0.02)


class TestCallbackAfterArchive:
    async def test_video_archived_arrives_signed_once_every_variant_is_in_s3(
        self, flow: FlowStack, receiver: Receiver
    ) -> None:
        created = await flow.api.post(
            "/v1/videos",
            json={"prompt": "a paper boat", "callback_url": receiver.url(), "metadata": {"job": "j-7"}},
        )
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        await flow.wait_upstream_finished(video_id)
        await flow.archive(video_id)
        await deliver_until_received(flow, receiver)

        secret = (await flow.api.get("/v1/callbacks/secret")).json()["secret"]
        (request,) = receiver.requests
        event = Webhook(secret).verify(request.body, request.headers)
        assert event["type"] == "video.archived"
        assert event["data"]["id"] == video_id and event["data"]["status"] == "completed"
        assert event["data"]["metadata"] == {"job": "j-7"}
        retrieved = (await flow.api.get(f"/v1/videos/{video_id}")).json()["archive"]
        assert set(event["data"]["archive"]) == {"video", "thumbnail", "spritesheet"}
        for variant, asset in event["data"]["archive"].items():
            assert asset == {
                "state": "archived",
                "bytes": retrieved[variant]["bytes"],
                "sha256": retrieved[variant]["sha256"],
            }

        # The worker runs again (reconciler, a repeated sync): the caller still hears once.
        await flow.archive(video_id)
        await delivery.deliver_due(flow.context)
        assert len(receiver.requests) == 1

    async def test_a_failed_render_sends_video_failed(self, flow: FlowStack, receiver: Receiver) -> None:
        created = await flow.api.post(
            "/v1/videos", json={"prompt": "something forbidden", "callback_url": receiver.url()}
        )
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        await flow.wait_upstream_finished(video_id)
        await flow.archive(video_id)
        await deliver_until_received(flow, receiver)
        body = json.loads(receiver.requests[0].body)
        assert body["type"] == "video.failed" and body["data"]["id"] == video_id
        assert body["data"]["error"]["code"] == "moderation_blocked"

        # Upstream says failed again (a repeated sync): the failure was told once, and stays told once.
        await flow.archive(video_id)
        await delivery.deliver_due(flow.context)
        assert len(receiver.requests) == 1
