"""A `kind: seedance` profile in process: the facade and the worker in front of the Seedance (ModelArk) simulator,
real Postgres and SeaweedFS.

What the facade refuses before any upstream call, how a task's endings reach the caller, delete (a queued
task is cancelled upstream, a running one left alone), the archive (the MP4 from the TOS-like file host, the
thumbnail and spritesheet derived from it), and the profile's receiver for Ark's unsigned callbacks: the
simulator's own callback queues a sync of its video; a forged one for an unknown task is stored as an orphan
and calls nothing upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import av
import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from app.archive import reconciler
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core.config import S3Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Asset, Variant, Video, VideoStatus, WebhookEvent
from app.simulator import create_simulator_app
from app.simulator.seedance import create_seedance_simulator_app
from app.upstream.reference import PARAM as REFERENCE_PARAM
from app.upstream.router import UpstreamRouter
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import make_settings
from tests.support.transports import ByHost
from tests.support.worker import worker_settings

ARK_KEY = "ark-key"
PRO = "seedance-1-0-pro-250528"
FILES_HOST = "files.seedance.test"
RECEIVER = "http://gateway.test/webhooks/seedance"


class Callbacks:
    """What the simulator POSTs to the profile's `callback_url`, kept here so a test can deliver it itself."""

    def __init__(self) -> None:
        self.received: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return httpx.Response(200)

    async def wait_for(self, task_id: str, status: str, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            for request in self.received:
                body = json.loads(request.content)
                if (body["id"], body["status"]) == (task_id, status):
                    return request.content
            assert time.monotonic() < deadline, f"no {status} callback for {task_id}"
            await asyncio.sleep(0.05)


@dataclass
class Seedance:
    api: httpx.AsyncClient
    simulator: httpx.AsyncClient
    callbacks: Callbacks
    database: Database
    context: JobContext

    async def stats(self) -> dict[str, Any]:
        counts: dict[str, Any] = (await self.simulator.get("/_sim/stats")).json()
        return counts

    async def create(self, **fields: str) -> httpx.Response:
        parts = {"prompt": "a fox in the snow", "model": PRO, "seconds": "2", "size": "864x480", **fields}
        return await self.api.post("/v1/videos", files={name: (None, value) for name, value in parts.items()})

    async def created(self, **fields: str) -> str:
        response = await self.create(**fields)
        assert response.status_code == 200, response.text
        video_id: str = response.json()["id"]
        return video_id

    async def task_id(self, video_id: str) -> str:
        async with self.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None and video.upstream_id is not None
            return video.upstream_id

    async def task(self, video_id: str) -> dict[str, Any]:
        task: dict[str, Any] = (
            await self.simulator.get(f"/api/v3/contents/generations/tasks/{await self.task_id(video_id)}")
        ).json()
        return task

    async def settle(self, video_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        progress: list[int] = []
        while True:
            video: dict[str, Any] = (await self.api.get(f"/v1/videos/{video_id}")).json()
            progress.append(video["progress"])
            if video["status"] in ("completed", "failed"):
                video["seen_progress"] = progress
                return video
            assert time.monotonic() < deadline, video
            await asyncio.sleep(0.05)

    async def deliver(self, body: bytes) -> httpx.Response:
        return await self.api.post("/webhooks/seedance", content=body, headers={"content-type": "application/json"})

    async def jobs(self, video_id: str) -> list[ArchiveJob]:
        async with self.database.sessionmaker() as session:
            statement = select(ArchiveJob).where(ArchiveJob.video_id == video_id, ArchiveJob.kind == "sync")
            return list((await session.execute(statement)).scalars())

    async def all_jobs(self) -> int:
        async with self.database.sessionmaker() as session:
            return len((await session.execute(select(ArchiveJob.id))).all())

    async def event(self, webhook_id: str) -> WebhookEvent:
        async with self.database.sessionmaker() as session:
            statement = select(WebhookEvent).where(WebhookEvent.webhook_id == webhook_id)
            return (await session.execute(statement)).scalar_one()


@pytest.fixture
async def seedance(
    database_url: str, s3_settings: S3Settings, new_caller_key: NewCaller, database: Database
) -> AsyncIterator[Seedance]:
    callbacks = Callbacks()
    ark = create_seedance_simulator_app(
        SimulatorSettings(api_key=ARK_KEY, queue_seconds=0.2, render_seconds=0.6, fps=2, ttl_seconds=86400),
        files_base_url=f"http://{FILES_HOST}",
        callback_transport=httpx.MockTransport(callbacks),
    )
    main = create_simulator_app(SimulatorSettings(api_key="sim-key", queue_seconds=0, render_seconds=0.2, fps=2))
    settings = make_settings(database_url, upstream_base_url="http://main.test/v1").model_copy(
        update={
            "s3": s3_settings,
            "worker": worker_settings(),
            "upstreams": {
                "seedance": UpstreamProfile(
                    kind="seedance",
                    base_url="http://ark.test/api/v3",
                    api_key=ARK_KEY,
                    models=[PRO, "seedance-1-5-pro-251215"],
                    content_redirect_hosts=[FILES_HOST],
                    webhook_url=RECEIVER,
                    retry_base_seconds=0.01,
                    retry_max_seconds=0.05,
                )
            },
        }
    )
    apps: dict[str, FastAPI] = {"ark.test": ark, FILES_HOST: ark, "main.test": main}
    app = create_app(settings, upstream_transport=ByHost(apps))
    upstreams = UpstreamRouter(settings, transport=ByHost(apps))
    storage = ArchiveStorage(s3_settings)
    await storage.ensure_bucket()
    simulator = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ark),
        base_url="http://ark.test",
        headers={"authorization": f"Bearer {ARK_KEY}"},
    )
    async with (
        ark.router.lifespan_context(ark),
        main.router.lifespan_context(main),
        app.router.lifespan_context(app),
        gateway_client(app, await new_caller_key()) as api,
    ):
        context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
        yield Seedance(api, simulator, callbacks, database, context)
    await simulator.aclose()
    await upstreams.aclose()
    storage.close()


class TestRefusedBeforeAnyUpstreamCall:
    @pytest.mark.parametrize(
        ("fields", "param", "listed"),
        [
            ({"seconds": "13"}, "seconds", "'2', '3'"),
            ({"seconds": "4", "model": "seedance-1-5-pro-251215", "size": "864x480"}, "size", "'864x496'"),
            ({"size": "1280x720"}, "size", "'1248x704'"),
        ],
    )
    async def test_what_the_model_cannot_render_is_a_400_naming_the_param(
        self, seedance: Seedance, fields: dict[str, str], param: str, listed: str
    ) -> None:
        before = (await seedance.stats())["create_requests"]
        response = await seedance.create(**fields)
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error")
        assert listed in error["message"]
        assert (await seedance.stats())["create_requests"] == before
        assert (await seedance.api.get("/v1/videos")).json()["data"] == []


class TestEndings:
    async def test_a_render_completes_with_a_days_window(self, seedance: Seedance) -> None:
        created = await seedance.create()
        assert created.status_code == 200, created.text
        video = created.json()
        assert (video["model"], video["seconds"], video["size"], video["status"]) == (PRO, "2", "864x480", "queued")
        settled = await seedance.settle(video["id"])
        assert (settled["status"], settled["progress"]) == ("completed", 100)
        assert settled["seen_progress"] == sorted(settled["seen_progress"])
        task = await seedance.task(video["id"])
        assert task["status"] == "succeeded"
        # Ark clears the URL a day after the task ended (`updated_at`).
        assert settled["expires_at"] == task["updated_at"] + 24 * 3600

    async def test_a_moderation_failure_is_failed_moderation_blocked_with_arks_reason(self, seedance: Seedance) -> None:
        video_id = await seedance.created(prompt="something forbidden")
        settled = await seedance.settle(video_id)
        assert settled["status"] == "failed"
        assert settled["error"]["code"] == "moderation_blocked"
        assert "sensitive" in settled["error"]["message"]
        assert (await seedance.api.get(f"/v1/videos/{video_id}/content")).status_code == 404

    async def test_remix_is_refused_saying_what_seedance_can_do(self, seedance: Seedance) -> None:
        video_id = await seedance.created()
        await seedance.settle(video_id)
        response = await seedance.api.post(f"/v1/videos/{video_id}/remix", json={"prompt": "again"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unsupported_by_provider"

    async def test_delete_while_queued_cancels_the_task_upstream(self, seedance: Seedance) -> None:
        await seedance.simulator.patch("/_sim/config", json={"queue_seconds": 60})
        video_id = await seedance.created()
        deleted = await seedance.api.delete(f"/v1/videos/{video_id}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert (await seedance.task(video_id))["status"] == "cancelled"
        assert (await seedance.api.get(f"/v1/videos/{video_id}")).status_code == 404

    async def test_delete_while_running_hides_the_video_and_leaves_the_task_alone(self, seedance: Seedance) -> None:
        await seedance.simulator.patch("/_sim/config", json={"queue_seconds": 0, "render_seconds": 60})
        video_id = await seedance.created()
        assert (await seedance.task(video_id))["status"] == "running"
        deletes = (await seedance.stats())["requests"].get("delete_task", 0)
        assert (await seedance.api.delete(f"/v1/videos/{video_id}")).status_code == 200
        assert (await seedance.stats())["requests"].get("delete_task", 0) == deletes  # Ark cannot stop it
        assert (await seedance.task(video_id))["status"] == "running"
        assert (await seedance.api.get(f"/v1/videos/{video_id}")).status_code == 404


class TestArchive:
    async def test_the_callback_leads_to_the_mp4_archived_and_both_images_derived(self, seedance: Seedance) -> None:
        video_id = await seedance.created()
        task_id = await seedance.task_id(video_id)
        succeeded = await seedance.callbacks.wait_for(task_id, "succeeded")
        url = json.loads(succeeded)["content"]["video_url"]
        assert url.startswith(f"http://{FILES_HOST}/files/")
        mp4 = (await seedance.simulator.get(url)).content
        # The callback, delivered as the simulator sent it, is what queues the sync (no poll of ours did).
        assert (await seedance.deliver(succeeded)).json()["duplicate"] is False
        await Worker(seedance.context, worker_id="seedance-test").run_until_idle()

        async with seedance.database.sessionmaker() as session:
            rows = (await session.execute(select(Asset).where(Asset.video_id == video_id))).scalars().all()
            archived = {row.variant: row for row in rows}
        assert {variant: asset.state for variant, asset in archived.items()} == {
            "video": "archived",
            "thumbnail": "archived",
            "spritesheet": "archived",
        }
        assert archived["video"].sha256 == hashlib.sha256(mp4).hexdigest()
        served: dict[str, bytes] = {}
        for variant in Variant:
            response = await seedance.api.get(f"/v1/videos/{video_id}/content", params={"variant": variant.value})
            assert response.status_code == 200
            assert response.headers["content-type"] == variant.content_type
            served[variant.value] = response.content
        with av.open(io.BytesIO(served["video"]), mode="r") as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (864, 480)
        with Image.open(io.BytesIO(served["thumbnail"])) as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("WEBP", (864, 480))
        with Image.open(io.BytesIO(served["spritesheet"])) as spritesheet:
            assert spritesheet.format == "JPEG"
        # Ark's link stops working: the archive still serves every variant.
        assert (await seedance.simulator.post(f"/_sim/tasks/{task_id}/expire")).status_code == 200
        assert (await seedance.simulator.get(url)).status_code == 403
        again = await seedance.api.get(f"/v1/videos/{video_id}/content", params={"variant": "video"})
        assert again.content == served["video"]


class TestCallbacks:
    async def test_the_simulators_callback_for_a_known_task_queues_a_sync_once(self, seedance: Seedance) -> None:
        video_id = await seedance.created()
        task_id = await seedance.task_id(video_id)
        running = await seedance.callbacks.wait_for(task_id, "running")
        # The profile's webhook_url went out as callback_url, with the video's reference added.
        assert seedance.callbacks.received[0].url.copy_remove_param(REFERENCE_PARAM) == RECEIVER
        before = {job.id for job in await seedance.jobs(video_id)}
        first = await seedance.deliver(running)
        assert first.status_code == 200 and first.json()["duplicate"] is False
        again = await seedance.deliver(running)  # Ark retrying the same callback
        assert again.json()["duplicate"] is True
        new = [job for job in await seedance.jobs(video_id) if job.id not in before]
        assert len(new) == 1
        stored = await seedance.event(f"seedance:{task_id}:running")
        assert (stored.upstream_profile, stored.event_type, stored.outcome, stored.video_id) == (
            "seedance",
            "task.running",
            "enqueued",
            video_id,
        )

    async def test_a_forged_callback_for_an_unknown_task_is_an_orphan_and_calls_nothing_upstream(
        self, seedance: Seedance
    ) -> None:
        forged = json.dumps({"id": "cgt-20990101000000-zzzzz", "status": "succeeded", "content": {"video_url": "x"}})
        before = await seedance.stats()
        jobs_before = await seedance.all_jobs()
        response = await seedance.deliver(forged.encode())
        assert response.status_code == 200 and response.json()["duplicate"] is False
        assert (await seedance.stats())["requests"] == before["requests"]
        stored = await seedance.event("seedance:cgt-20990101000000-zzzzz:succeeded")
        assert (stored.outcome, stored.video_id, stored.upstream_video_id) == (
            "orphan",
            None,
            "cgt-20990101000000-zzzzz",
        )
        assert await seedance.all_jobs() == jobs_before

    @pytest.mark.parametrize("body", [b'{"id": "../x", "status": "succeeded"}', b"[]", b'{"id": "cgt-1"}'])
    async def test_a_body_that_is_no_task_object_is_400_and_nothing_is_stored(
        self, seedance: Seedance, body: bytes
    ) -> None:
        response = await seedance.deliver(body)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        async with seedance.database.sessionmaker() as session:
            stored = await session.execute(select(WebhookEvent).where(WebhookEvent.body == body.decode()))
            assert stored.first() is None


class TestCutOffCreates:
    """A create whose answer never reached us (the API killed mid-call, or its connection cut before the task id
    was written): Ark lists no prompt, so only the reference in the callback URL can tie the task to the video."""

    async def cut_off(self, seedance: Seedance, video_id: str) -> None:
        age = seedance.context.settings.worker.unsubmitted_after_seconds + 60
        async with seedance.database.transaction() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            video.upstream_id, video.status, video.progress = None, VideoStatus.QUEUED, 0
            video.created_at = video.submitted_at = datetime.now(UTC) - timedelta(seconds=age)

    async def deliver_as_sent(self, seedance: Seedance, task_id: str, *, tamper: bool = False) -> httpx.Response:
        """Ark's callback for the task, POSTed to the URL Ark was given (its reference tampered with, or not)."""
        await seedance.callbacks.wait_for(task_id, "succeeded")
        [request] = [
            request
            for request in seedance.callbacks.received
            if json.loads(request.content)["id"] == task_id and json.loads(request.content)["status"] == "succeeded"
        ][:1]
        reference = request.url.params[REFERENCE_PARAM]
        assert reference.startswith("video_")
        if tamper:
            reference = reference[:-2] + ("AA" if not reference.endswith("AA") else "BB")
        return await seedance.api.post(
            request.url.path,
            params={REFERENCE_PARAM: reference},
            content=request.content,
            headers={"content-type": "application/json"},
        )

    async def test_the_callback_names_the_video_and_the_render_is_adopted_and_archived(
        self, seedance: Seedance
    ) -> None:
        video_id = await seedance.created(prompt=f"cut off {time.time_ns()}")
        task_id = await seedance.task_id(video_id)
        await self.cut_off(seedance, video_id)
        assert (await self.deliver_as_sent(seedance, task_id)).status_code == 200
        async with seedance.database.sessionmaker() as session:
            [orphan] = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.upstream_video_id == task_id))
            ).scalars()
            assert (orphan.outcome, orphan.video_id) == ("orphan", video_id)

        report = await reconciler.reconcile_once(seedance.context)
        assert (report.submissions_adopted, report.submissions_settled) == (1, 0)
        assert await seedance.task_id(video_id) == task_id
        await Worker(seedance.context, worker_id="test").run_until_idle()
        video = (await seedance.api.get(f"/v1/videos/{video_id}")).json()
        assert (video["status"], video["error"]) == ("completed", None)
        assert (await seedance.api.get(f"/v1/videos/{video_id}/content")).status_code == 200
        assert (await reconciler.reconcile_once(seedance.context)).submissions_adopted == 0

    async def test_a_reference_whose_tag_is_not_ours_names_nothing_and_the_create_is_settled_unknown(
        self, seedance: Seedance
    ) -> None:
        video_id = await seedance.created(prompt=f"cut off {time.time_ns()}")
        task_id = await seedance.task_id(video_id)
        await self.cut_off(seedance, video_id)
        assert (await self.deliver_as_sent(seedance, task_id, tamper=True)).status_code == 200
        report = await reconciler.reconcile_once(seedance.context)
        assert (report.submissions_adopted, report.submissions_settled) == (0, 1)
        video = (await seedance.api.get(f"/v1/videos/{video_id}")).json()
        assert (video["status"], video["error"]["code"]) == ("failed", "upstream_submission_unknown")
