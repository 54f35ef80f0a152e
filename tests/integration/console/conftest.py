"""A gateway with the console switched on (admin key set, small pages), and a signed-in browser-like client."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.auth import service as auth_service
from app.core.config import S3Settings
from app.core.db import Database
from app.main import create_app
from app.models import Video
from tests.conftest import make_settings
from tests.support.transports import CountingTransport

ADMIN_KEY = "vg-admin-console-test-0123456789"
PAGE_SIZE = 3
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
ROW_IDS = re.compile(r'data-video-id="([^"]+)"')


@pytest.fixture(scope="session")
async def console_app(
    database_url: str, upstream_transport: CountingTransport, seaweedfs_s3: S3Settings
) -> AsyncIterator[FastAPI]:
    base = make_settings(database_url)
    settings = base.model_copy(
        update={
            "s3": seaweedfs_s3,
            "admin_api_key": SecretStr(ADMIN_KEY),
            "console": base.console.model_copy(update={"page_size": PAGE_SIZE}),
        }
    )
    app = create_app(settings, upstream_transport=upstream_transport)
    async with app.router.lifespan_context(app):
        yield app


def browser(app: FastAPI) -> httpx.AsyncClient:
    """https, as a browser would need for the Secure cookie; redirects are asserted, not followed."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test")


async def sign_in(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/console/login", data={"admin_key": ADMIN_KEY, "next": "/console/videos"})


@pytest.fixture
async def anonymous(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(console_app) as client:
        yield client


@pytest.fixture
async def operator(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(console_app) as client:
        response = await sign_in(client)
        assert response.status_code == 303, response.text
        yield client


async def csrf_token(client: httpx.AsyncClient, page: str = "/console/videos") -> str:
    response = await client.get(page)
    assert response.status_code == 200, response.text
    found = CSRF_FIELD.search(response.text)
    assert found is not None
    return found.group(1)


@dataclass(frozen=True)
class Seeded:
    caller_id: uuid.UUID
    caller_name: str
    key: str


SeedCaller = Callable[[], Awaitable[Seeded]]


@pytest.fixture
def seed_caller(database: Database) -> SeedCaller:
    async def create() -> Seeded:
        async with database.sessionmaker.begin() as session:
            issued = await auth_service.create_caller(session, name=f"console-{uuid.uuid4().hex[:10]}")
            return Seeded(issued.caller.id, issued.caller.name, issued.key)

    return create


SeedVideos = Callable[..., Awaitable[list[str]]]


@pytest.fixture
def seed_videos(database: Database) -> SeedVideos:
    """Videos written straight to the table: `statuses` in order, one second apart (or all at `same_time`)."""

    async def insert(
        caller_id: uuid.UUID, statuses: list[str], *, same_time: bool = False, start: datetime | None = None
    ) -> list[str]:
        start = start or datetime.now(UTC) - timedelta(hours=1)
        ids = []
        async with database.sessionmaker.begin() as session:
            for index, status in enumerate(statuses):
                video_id = f"video_{uuid.uuid4().hex}"
                session.add(
                    Video(
                        id=video_id,
                        caller_id=caller_id,
                        model="sora-2",
                        size="1280x720",
                        seconds="4",
                        prompt=f"seeded {index}",
                        status=status,
                        progress=100 if status == "completed" else 0,
                        created_at=start if same_time else start + timedelta(seconds=index),
                    )
                )
                ids.append(video_id)
        return ids

    return insert
