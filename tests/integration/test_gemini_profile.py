"""A `kind: gemini` profile in process: the facade in front of the Gemini API simulator, real Postgres.

What the facade refuses before any upstream call, how each ending of a Veo operation reaches the caller, and
the profile's webhook receiver (Standard Webhooks-signed `video.generated` hints). The stock SDK drives the
same path over real HTTP in tests/e2e/test_gemini_sdk.py.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from app.core.config import S3Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Video, WebhookEvent
from app.simulator import create_gemini_simulator_app, create_simulator_app
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.transports import ByHost
from tests.support.webhooks import signed

VEO_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
VEO = "veo-3.1-generate-preview"
GEMINI_KEY = "goog-key"


class Veo:
    def __init__(self, api: httpx.AsyncClient, simulator: FastAPI) -> None:
        self.api = api
        self.simulator = simulator

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.simulator),
            base_url="http://gemini.test",
            headers={"x-goog-api-key": GEMINI_KEY},
        )

    async def creates(self) -> int:
        async with self.admin() as admin:
            count: int = (await admin.get("/_sim/stats")).json()["create_requests"]
            return count

    async def create(self, **fields: str) -> httpx.Response:
        parts = {"prompt": "a fox in the snow", "model": VEO, "seconds": "4", "size": "1280x720", **fields}
        return await self.api.post("/v1/videos", files={name: (None, value) for name, value in parts.items()})

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


@pytest.fixture
async def veo(database_url: str, seaweedfs_s3: S3Settings, new_caller_key: NewCaller) -> AsyncIterator[Veo]:
    gemini = create_gemini_simulator_app(
        SimulatorSettings(api_key=GEMINI_KEY, queue_seconds=0.2, render_seconds=1.2, fps=2)
    )
    main = create_simulator_app(SimulatorSettings(api_key="sim-key", queue_seconds=0, render_seconds=0.2, fps=2))
    settings = make_settings(database_url, upstream_base_url="http://main.test/v1").model_copy(
        update={
            "s3": seaweedfs_s3,
            "upstreams": {
                "veo": UpstreamProfile(
                    kind="gemini",
                    base_url="http://gemini.test",
                    api_key=GEMINI_KEY,
                    models=[VEO, "veo-3.1-fast-generate-preview"],
                    webhook_secrets=VEO_SECRET,
                    retry_base_seconds=0.01,
                    retry_max_seconds=0.05,
                )
            },
        }
    )
    app = create_app(settings, upstream_transport=ByHost({"gemini.test": gemini, "main.test": main}))
    async with (
        gemini.router.lifespan_context(gemini),
        main.router.lifespan_context(main),
        app.router.lifespan_context(app),
        gateway_client(app, await new_caller_key()) as api,
    ):
        yield Veo(api, gemini)


class TestRefusedBeforeAnyUpstreamCall:
    @pytest.mark.parametrize(
        ("fields", "param", "listed"),
        [
            ({"seconds": "12"}, "seconds", "'4', '6', '8'"),
            ({"size": "1792x1024"}, "size", "'1080x1920', '1920x1080'"),
            ({"size": "1920x1080", "seconds": "4"}, "seconds", "'8'"),
        ],
    )
    async def test_what_the_model_cannot_render_is_a_400_naming_the_param(
        self, veo: Veo, fields: dict[str, str], param: str, listed: str
    ) -> None:
        before = await veo.creates()
        response = await veo.create(**fields)
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error")
        assert listed in error["message"]
        assert await veo.creates() == before
        # Nothing was kept or charged for it.
        assert (await veo.api.get("/v1/videos")).json()["data"] == []

    async def test_an_image_link_is_refused_for_veo_but_its_bytes_are_sent(self, veo: Veo) -> None:
        body = {"prompt": "p", "model": VEO, "seconds": "4", "size": "1280x720"}
        linked = await veo.api.post(
            "/v1/videos", json={**body, "input_reference": {"image_url": "https://x.test/a.png"}}
        )
        assert linked.status_code == 400
        assert linked.json()["error"]["code"] == "unsupported_by_provider"
        buffer = io.BytesIO()
        Image.new("RGB", (64, 36), "navy").save(buffer, format="PNG")
        data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        sent = await veo.api.post("/v1/videos", json={**body, "input_reference": {"image_url": data_url}})
        assert sent.status_code == 200, sent.text  # Veo takes an image of any size as the first frame

    async def test_the_openai_profile_keeps_the_contracts_values(self, veo: Veo) -> None:
        response = await veo.api.post("/v1/videos", files={"prompt": (None, "p"), "seconds": (None, "6")})
        assert response.status_code == 400
        assert "'4', '8', '12'" in response.json()["error"]["message"]


class TestEndings:
    async def test_a_render_completes_with_progress_that_only_moves_forward(self, veo: Veo) -> None:
        created = await veo.create()
        assert created.status_code == 200, created.text
        video = created.json()
        assert video["id"].startswith("video_") and video["model"] == VEO
        assert (video["seconds"], video["size"]) == ("4", "1280x720")
        settled = await veo.settle(video["id"])
        assert settled["status"] == "completed"
        assert settled["progress"] == 100
        seen = settled["seen_progress"]
        assert seen == sorted(seen)
        # Google's window: two days from creation, not OpenAI's hour.
        assert settled["expires_at"] - settled["created_at"] >= 2 * 24 * 3600 - 5

    async def test_a_moderation_block_fails_with_moderation_blocked_and_googles_reason(self, veo: Veo) -> None:
        video = (await veo.create(prompt="something forbidden")).json()
        settled = await veo.settle(video["id"])
        assert settled["status"] == "failed"
        assert settled["error"]["code"] == "moderation_blocked"
        assert "not been charged" in settled["error"]["message"]

    async def test_an_operation_error_fails_with_the_providers_code(self, veo: Veo) -> None:
        video = (await veo.create(prompt="sim:error please")).json()
        settled = await veo.settle(video["id"])
        assert settled["status"] == "failed"
        assert settled["error"]["code"] == "internal"
        content = await veo.api.get(f"/v1/videos/{video['id']}/content")
        assert content.status_code == 404

    async def test_remix_is_refused_saying_what_veo_can_do(self, veo: Veo) -> None:
        video = (await veo.create()).json()
        await veo.settle(video["id"])
        response = await veo.api.post(f"/v1/videos/{video['id']}/remix", json={"prompt": "again"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "unsupported_by_provider"
        assert "remix" not in error["message"].split("supports:")[1]

    async def test_delete_hides_the_video_without_an_upstream_call(self, veo: Veo) -> None:
        video = (await veo.create()).json()
        deleted = await veo.api.delete(f"/v1/videos/{video['id']}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert (await veo.api.get(f"/v1/videos/{video['id']}")).status_code == 404


class TestWebhooks:
    async def test_a_signed_hint_queues_a_sync_for_each_unfinished_video_of_the_profile(
        self, veo: Veo, database: Database
    ) -> None:
        ids = [(await veo.create()).json()["id"] for _ in range(2)]
        event = {"type": "video.generated", "data": {"video_uri": "http://gemini.test/v1beta/files/x:download"}}
        body, headers = signed(VEO_SECRET, event)
        response = await veo.api.post("/webhooks/veo", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["duplicate"] is False
        again = await veo.api.post("/webhooks/veo", content=body, headers=headers)
        assert again.json()["duplicate"] is True
        async with database.sessionmaker() as session:
            syncs = (
                await session.execute(select(ArchiveJob).where(ArchiveJob.video_id.in_(ids), ArchiveJob.kind == "sync"))
            ).scalars()
            assert sorted(job.video_id for job in syncs) == sorted(ids)
            stored = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"]))
            ).scalar_one()
            assert (stored.upstream_profile, stored.outcome, stored.event_type) == (
                "veo",
                "enqueued",
                "video.generated",
            )

    async def test_a_badly_signed_delivery_is_401_and_nothing_is_stored(self, veo: Veo, database: Database) -> None:
        body, headers = signed(TEST_WEBHOOK_SECRET, {"type": "video.generated", "data": {"video_uri": "u"}})
        response = await veo.api.post("/webhooks/veo", content=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"
        async with database.sessionmaker() as session:
            stored = await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"]))
            assert stored.first() is None

    async def test_a_hint_naming_an_operation_queues_only_that_video(self, veo: Veo, database: Database) -> None:
        ids = [(await veo.create()).json()["id"] for _ in range(2)]
        async with database.sessionmaker() as session:
            target = await session.get(Video, ids[0])
            assert target is not None and target.upstream_id is not None
            operation = target.upstream_id
            before = set(
                (
                    await session.execute(
                        select(ArchiveJob.id).where(ArchiveJob.video_id.in_(ids), ArchiveJob.kind == "sync")
                    )
                ).scalars()
            )
        body, headers = signed(VEO_SECRET, {"type": "video.generated", "data": {"name": operation, "video_uri": "u"}})
        assert (await veo.api.post("/webhooks/veo", content=body, headers=headers)).status_code == 200
        async with database.sessionmaker() as session:
            new = (
                await session.execute(
                    select(ArchiveJob).where(
                        ArchiveJob.video_id.in_(ids), ArchiveJob.kind == "sync", ArchiveJob.id.not_in(before)
                    )
                )
            ).scalars()
            assert [job.video_id for job in new] == [ids[0]]

    async def test_an_unknown_event_is_recorded_and_acknowledged(self, veo: Veo, database: Database) -> None:
        body, headers = signed(VEO_SECRET, {"type": "batch.succeeded", "data": {"anything": json.dumps([1])}})
        response = await veo.api.post("/webhooks/veo", content=body, headers=headers)
        assert response.status_code == 200
        async with database.sessionmaker() as session:
            stored = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == headers["webhook-id"]))
            ).scalar_one()
            assert stored.outcome == "ignored"
