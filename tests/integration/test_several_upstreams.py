"""Several upstreams in one gateway: routing by model, per-profile webhooks, and ids kept per profile."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core.config import S3Settings, SimulatorSettings, UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import ArchiveJob, Video
from app.simulator import create_simulator_app
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.transports import ByHost
from tests.support.webhooks import signed

PRO_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
async def two_upstreams(
    database_url: str, seaweedfs_s3: S3Settings, new_caller_key: NewCaller
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, FastAPI]]]:
    simulators = {
        host: create_simulator_app(SimulatorSettings(api_key=key, queue_seconds=0, render_seconds=0.2, fps=2))
        for host, key in (("main.test", "sim-key"), ("pro.test", "pro-key"))
    }
    settings = make_settings(database_url, upstream_base_url="http://main.test/v1").model_copy(
        update={
            "s3": seaweedfs_s3,
            "upstreams": {
                "pro": UpstreamProfile(
                    base_url="http://pro.test/v1",
                    api_key="pro-key",
                    models=["sora-2-pro"],
                    webhook_secrets=PRO_SECRET,
                )
            },
        }
    )
    app = create_app(settings, upstream_transport=ByHost(simulators))
    async with (
        simulators["main.test"].router.lifespan_context(simulators["main.test"]),
        simulators["pro.test"].router.lifespan_context(simulators["pro.test"]),
        app.router.lifespan_context(app),
        gateway_client(app, await new_caller_key()) as api,
    ):
        yield api, simulators


async def create_stats(app: FastAPI, key: str) -> int:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim", headers={"authorization": f"Bearer {key}"}
    ) as client:
        count: int = (await client.get("/_sim/stats")).json()["create_requests"]
        return count


class TestSeveralUpstreams:
    async def test_a_model_renders_on_its_profile_and_everything_after_follows_it(
        self, two_upstreams: tuple[httpx.AsyncClient, dict[str, FastAPI]], database: Database
    ) -> None:
        api, simulators = two_upstreams
        before = {
            host: await create_stats(app, key)
            for host, app, key in (
                ("main", simulators["main.test"], "sim-key"),
                ("pro", simulators["pro.test"], "pro-key"),
            )
        }
        pro = (await api.post("/v1/videos", files={"prompt": (None, "p"), "model": (None, "sora-2-pro")})).json()
        plain = (await api.post("/v1/videos", files={"prompt": (None, "p")})).json()
        assert await create_stats(simulators["pro.test"], "pro-key") == before["pro"] + 1
        assert await create_stats(simulators["main.test"], "sim-key") == before["main"] + 1
        async with database.sessionmaker() as session:
            profiles = {
                video.id: video.upstream_profile
                for video in (
                    await session.execute(select(Video).where(Video.id.in_([pro["id"], plain["id"]])))
                ).scalars()
            }
        assert profiles == {pro["id"]: "pro", plain["id"]: "default"}
        deadline = time.monotonic() + 15
        while (await api.get(f"/v1/videos/{pro['id']}")).json()["status"] != "completed":
            assert time.monotonic() < deadline
        content = await api.get(f"/v1/videos/{pro['id']}/content", params={"variant": "thumbnail"})
        assert content.status_code == 200 and content.content[8:12] == b"WEBP"

    async def test_each_profile_has_its_own_webhook_path_and_secret(
        self, two_upstreams: tuple[httpx.AsyncClient, dict[str, FastAPI]], database: Database
    ) -> None:
        api, _ = two_upstreams
        pro = (await api.post("/v1/videos", files={"prompt": (None, "p"), "model": (None, "sora-2-pro")})).json()
        async with database.sessionmaker() as session:
            video = await session.get(Video, pro["id"])
        assert video is not None
        event = {
            "id": "evt_" + secrets.token_hex(6),
            "object": "event",
            "created_at": 1,
            "type": "video.completed",
            "data": {"id": video.upstream_id},
        }
        body, headers = signed(TEST_WEBHOOK_SECRET, event)
        assert (await api.post("/webhooks/pro", content=body, headers=headers)).status_code == 401
        body, headers = signed(PRO_SECRET, event)
        assert (await api.post("/webhooks/pro", content=body, headers=headers)).status_code == 200
        # The same upstream id arriving at the main endpoint is not this video: it stays an orphan there.
        event["id"] = "evt_" + secrets.token_hex(6)
        body, headers = signed(TEST_WEBHOOK_SECRET, event)
        assert (await api.post("/webhooks/openai", content=body, headers=headers)).status_code == 200
        async with database.sessionmaker() as session:
            syncs = (
                (
                    await session.execute(
                        select(ArchiveJob).where(ArchiveJob.video_id == pro["id"], ArchiveJob.kind == "sync")
                    )
                )
                .scalars()
                .all()
            )
        assert len(syncs) == 1
