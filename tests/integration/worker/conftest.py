"""An in-process archive worker: real Postgres, real SeaweedFS, the simulator app as upstream (ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core.config import S3Settings, Settings, WorkerSettings
from app.core.db import Database
from app.main import create_app
from app.upstream.router import UpstreamRouter
from tests.conftest import make_settings
from tests.integration.conftest import NewCaller, gateway_client


def worker_settings(**overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "concurrency": 4,
        "poll_interval_seconds": 0.05,
        "lease_seconds": 5,
        "heartbeat_seconds": 1,
        "max_attempts": 3,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "reconcile_interval_seconds": 0.2,
        "shutdown_grace_seconds": 5,
    }
    return WorkerSettings(**{**values, **overrides})


@dataclass
class ArchiveStack:
    settings: Settings
    api: httpx.AsyncClient
    simulator: httpx.AsyncClient
    database: Database
    storage: ArchiveStorage
    context: JobContext

    def worker(self) -> Worker:
        return Worker(self.context, worker_id="test-worker")

    async def set_faults(self, **faults: Any) -> None:
        response = await self.simulator.put("/_sim/faults", json=faults)
        assert response.status_code == 200, response.text

    async def upstream_id(self, video_id: str) -> str:
        async with self.database.sessionmaker() as session:
            from app.models import Video

            video = await session.get(Video, video_id)
            assert video is not None and video.upstream_id is not None
            return video.upstream_id


@pytest.fixture
async def archive_stack(
    database_url: str,
    simulator_app: FastAPI,
    s3_settings: S3Settings,
    new_caller_key: NewCaller,
    database: Database,
) -> AsyncIterator[ArchiveStack]:
    settings = make_settings(database_url).model_copy(update={"s3": s3_settings, "worker": worker_settings()})
    upstream_transport = httpx.ASGITransport(app=simulator_app)
    app = create_app(settings, upstream_transport=upstream_transport)
    upstreams = UpstreamRouter(settings, transport=upstream_transport)
    storage = ArchiveStorage(s3_settings)
    await storage.ensure_bucket()
    simulator = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator_app),
        base_url="http://upstream.test",
        headers={"authorization": "Bearer sim-key"},
    )
    async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as api:
        context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
        yield ArchiveStack(settings, api, simulator, database, storage, context)
    await simulator.put("/_sim/faults", json={})
    await simulator.aclose()
    await upstreams.aclose()
    storage.close()
