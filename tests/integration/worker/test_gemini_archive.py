"""The archive for a `kind: gemini` profile, in process: the Gemini API simulator as upstream, the worker
archiving the MP4 (the only variant Google serves) and deriving the thumbnail and spritesheet from it; a replay and the
integrity audit keep that (the images are made again from our MP4, never asked of Google).

docs/reliability.md rows as for OpenAI's kind: the round trip and serving after upstream expiry (26), the reconciler
with no webhook at all (Gemini sends none for failures), and a window that closed before the download (24).
The SIGKILLed worker mid-download runs on real processes in tests/e2e/test_gemini_sdk.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from app.archive import audit, reconciler
from app.archive import service as archive_service
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage, make_client
from app.core.config import CallbackSettings, S3Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import Asset, CallbackDelivery, Variant, Video
from app.simulator import create_gemini_simulator_app
from app.upstream.router import UpstreamRouter
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import make_settings
from tests.support.worker import ArchiveStack, worker_settings

KEY = "goog-key"
VEO = "veo-3.1-fast-generate-preview"


class GeminiStack(ArchiveStack):
    async def create(self, prompt: str = "a heron at dawn", **fields: str) -> str:
        parts = {"prompt": prompt, "model": VEO, "seconds": "4", "size": "1280x720", **fields}
        response = await self.api.post("/v1/videos", files={name: (None, value) for name, value in parts.items()})
        assert response.status_code == 200, response.text
        video_id: str = response.json()["id"]
        return video_id

    async def wait_upstream_done(self, video_id: str, timeout: float = 20) -> dict[str, Any]:
        name = await self.upstream_id(video_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            operation: dict[str, Any] = (await self.simulator.get(f"/v1beta/{name}")).json()
            if operation.get("done"):
                return operation
            await asyncio.sleep(0.05)
        raise AssertionError("the operation did not finish")

    async def upstream_mp4(self, video_id: str) -> bytes:
        operation = await self.wait_upstream_done(video_id)
        uri = operation["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        response = await self.simulator.get(uri, follow_redirects=True)
        assert response.status_code == 200
        return response.content

    async def assets(self, video_id: str) -> dict[str, Asset]:
        async with self.database.sessionmaker() as session:
            rows = (await session.execute(select(Asset).where(Asset.video_id == video_id))).scalars().all()
            return {row.variant: row for row in rows}

    async def enqueue_sync(self, video_id: str) -> None:
        async with self.database.sessionmaker.begin() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            await archive_service.enqueue_sync(session, video=video, settings=self.settings.worker)


@pytest.fixture
async def gemini_stack(
    request: pytest.FixtureRequest,
    database_url: str,
    s3_settings: S3Settings,
    new_caller_key: NewCaller,
    database: Database,
) -> AsyncIterator[GeminiStack]:
    """`indirect` parameters: `retention_seconds` of the profile, `ttl_seconds` of the simulator."""
    params: dict[str, Any] = getattr(request, "param", {})
    simulator_app = create_gemini_simulator_app(
        SimulatorSettings(
            api_key=KEY,
            queue_seconds=0,
            render_seconds=0.3,
            fps=4,
            ttl_seconds=params.get("ttl_seconds", 2 * 24 * 3600),
        )
    )
    settings = make_settings(database_url).model_copy(
        update={
            "s3": s3_settings,
            "worker": worker_settings(),
            "callbacks": CallbackSettings(allowed_destinations=["127.0.0.1/32"]),
            "upstreams": {
                "veo": UpstreamProfile(
                    kind="gemini",
                    base_url="http://gemini.test",
                    api_key=KEY,
                    models=[VEO],
                    sends_webhooks=False,
                    retention_seconds=params.get("retention_seconds"),
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
    simulator = httpx.AsyncClient(transport=transport, base_url="http://gemini.test", headers={"x-goog-api-key": KEY})
    async with (
        simulator_app.router.lifespan_context(simulator_app),
        app.router.lifespan_context(app),
        gateway_client(app, await new_caller_key()) as api,
    ):
        context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
        yield GeminiStack(settings, api, simulator, database, storage, context)
    await simulator.aclose()
    await upstreams.aclose()
    storage.close()


def mp4_size(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


class TestArchive:
    async def test_the_mp4_is_archived_and_both_images_are_derived_from_it(self, gemini_stack: GeminiStack) -> None:
        stack = gemini_stack
        video_id = await stack.create()
        mp4 = await stack.upstream_mp4(video_id)
        await stack.enqueue_sync(video_id)
        await stack.worker().run_until_idle()

        archived = await stack.assets(video_id)
        assert {variant: asset.state for variant, asset in archived.items()} == {
            "video": "archived",
            "thumbnail": "archived",
            "spritesheet": "archived",
        }
        assert archived["video"].sha256 == hashlib.sha256(mp4).hexdigest()
        served: dict[str, bytes] = {}
        for variant in Variant:
            response = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": variant.value})
            assert response.status_code == 200
            assert response.headers["content-type"] == variant.content_type
            assert hashlib.sha256(response.content).hexdigest() == archived[variant.value].sha256
            served[variant.value] = response.content
        assert mp4_size(served["video"]) == (1280, 720)
        with Image.open(io.BytesIO(served["thumbnail"])) as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("WEBP", (1280, 720))
        with Image.open(io.BytesIO(served["spritesheet"])) as spritesheet:
            assert spritesheet.format == "JPEG"

        # Google drops the file: the archive still serves every variant.
        operation = (await stack.upstream_id(video_id)).rsplit("/", 1)[1]
        assert (await stack.simulator.post(f"/_sim/operations/{operation}/expire")).status_code == 200
        again = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": "spritesheet"})
        assert again.content == served["spritesheet"]

    async def test_the_images_wait_for_the_mp4_and_are_not_asked_of_google(self, gemini_stack: GeminiStack) -> None:
        stack = gemini_stack
        video_id = await stack.create()
        await stack.wait_upstream_done(video_id)
        before = (await stack.simulator.get("/_sim/stats")).json()["requests"]
        await stack.enqueue_sync(video_id)
        await stack.worker().run_until_idle()
        after = (await stack.simulator.get("/_sim/stats")).json()["requests"]
        downloads = after.get("download_file", 0) - before.get("download_file", 0)
        assert downloads == 1  # the MP4 once; the images come from our own copy
        thumbnail = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"})
        assert thumbnail.status_code == 200

    async def test_the_reconciler_archives_a_video_nobody_notified(self, gemini_stack: GeminiStack) -> None:
        stack = gemini_stack
        video_id = await stack.create()
        await stack.wait_upstream_done(video_id)
        worker = stack.worker()
        for _ in range(3):  # sync, then the MP4, then the images
            await reconciler.reconcile_once(stack.context)
            await worker.run_until_idle()
            await asyncio.sleep(0.3)  # past the reconcile interval: each pass looks at stale videos only
        archived = await stack.assets(video_id)
        assert {asset.state for asset in archived.values()} == {"archived"}

    @pytest.mark.parametrize("gemini_stack", [{"retention_seconds": 1, "ttl_seconds": 0}], indirect=True)
    async def test_a_closed_window_expires_the_mp4_and_the_images_made_from_it(
        self, gemini_stack: GeminiStack, database: Database
    ) -> None:
        stack = gemini_stack
        video_id = await stack.create(callback_url="http://127.0.0.1:9/hook")
        await stack.wait_upstream_done(video_id)
        await asyncio.sleep(1.2)  # past the one-second window
        await stack.enqueue_sync(video_id)
        worker = stack.worker()
        await worker.run_until_idle()
        await worker.maintain()
        await worker.run_until_idle()
        archived = await stack.assets(video_id)
        assert {variant: asset.state for variant, asset in archived.items()} == {
            "video": "expired",
            "thumbnail": "expired",
            "spritesheet": "expired",
        }
        assert "made from the MP4" in str(archived["thumbnail"].error)
        async with database.sessionmaker() as session:
            events = (
                (
                    await session.execute(
                        select(CallbackDelivery.event_type).where(CallbackDelivery.video_id == video_id)
                    )
                )
                .scalars()
                .all()
            )
        # Told once that the archive failed, not once per variant.
        assert list(events).count("video.archive_failed") == 1


class TestReplayAndAudit:
    async def test_a_replay_downloads_the_mp4_again_and_keeps_the_images_made_from_it(
        self, gemini_stack: GeminiStack
    ) -> None:
        stack = gemini_stack
        video_id = await stack.create()
        await stack.wait_upstream_done(video_id)
        await stack.enqueue_sync(video_id)
        await stack.worker().run_until_idle()
        before = {variant: (asset.state, asset.sha256) for variant, asset in (await stack.assets(video_id)).items()}
        async with stack.database.sessionmaker.begin() as session:
            outcome = await archive_service.replay(
                session, video_id=video_id, settings=stack.settings, upstreams=stack.context.upstreams
            )
        assert (outcome.result, outcome.queued, outcome.served) == (archive_service.ReplayResult.QUEUED, 1, 3)
        await stack.worker().run_until_idle()
        assert {variant: (a.state, a.sha256) for variant, a in (await stack.assets(video_id)).items()} == before

    async def test_the_audit_derives_a_missing_image_again_from_the_archived_mp4(
        self, gemini_stack: GeminiStack
    ) -> None:
        stack = gemini_stack
        video_id = await stack.create()
        await stack.wait_upstream_done(video_id)
        await stack.enqueue_sync(video_id)
        await stack.worker().run_until_idle()
        recorded = (await stack.assets(video_id))["thumbnail"].sha256
        key = stack.storage.key_for(video_id, Variant.THUMBNAIL)
        make_client(stack.settings.s3).delete_object(Bucket=stack.settings.s3.bucket, Key=key)
        report = await audit.audit_once(stack.context, limit=10, video_id=video_id)
        [finding] = report.findings
        assert (finding.variant, finding.problem, finding.action) == ("thumbnail", "missing", "repair")
        assert "made from the MP4" in finding.reason
        await stack.worker().run_until_idle()
        thumbnail = (await stack.assets(video_id))["thumbnail"]
        assert (thumbnail.state, thumbnail.sha256) == ("archived", recorded)  # the same frame, encoded the same way
