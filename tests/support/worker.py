"""The archive worker in process: its test settings, and the stack the worker tests drive (API, simulator,
worker, Postgres, SeaweedFS; the `archive_stack` fixture of tests/integration/conftest.py builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core.config import Settings, WorkerSettings
from app.core.db import Database
from app.models import Video


def worker_settings(**overrides: Any) -> WorkerSettings:
    """A worker that polls, heartbeats and retries fast enough for tests; `overrides` are `WorkerSettings` fields."""
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
            video = await session.get(Video, video_id)
            assert video is not None and video.upstream_id is not None
            return video.upstream_id
