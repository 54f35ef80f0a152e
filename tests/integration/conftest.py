"""In-process stack: the gateway app over ASGI, its upstream the simulator app over ASGI, real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from app.auth import service as auth_service
from app.core.config import S3Settings, SimulatorSettings
from app.core.db import Database
from app.main import create_app
from app.simulator import create_simulator_app
from tests.conftest import make_settings
from tests.support.transports import CountingTransport

SIMULATOR_KEY = "sim-key"


@pytest.fixture(scope="session")
async def simulator_app() -> AsyncIterator[FastAPI]:
    settings = SimulatorSettings(
        api_key=SIMULATOR_KEY,  # type: ignore[arg-type]
        queue_seconds=0.0,
        render_seconds=0.3,
        fps=4,
        blocked_words=["forbidden"],
    )
    app = create_simulator_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def upstream_transport(simulator_app: FastAPI) -> CountingTransport:
    return CountingTransport(httpx.ASGITransport(app=simulator_app))


@pytest.fixture(scope="session")
async def gateway_app(
    database_url: str, upstream_transport: CountingTransport, seaweedfs_s3: S3Settings
) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url).model_copy(update={"s3": seaweedfs_s3})
    app = create_app(settings, upstream_transport=upstream_transport)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    settings = make_settings(database_url)
    database = Database.connect(settings.db)
    yield database
    await database.dispose()


NewCaller = Callable[[], Awaitable[str]]


@pytest.fixture(scope="session")
def new_caller_key(database: Database) -> NewCaller:
    """Creates a caller with a fresh key and returns the key."""

    async def create() -> str:
        async with database.sessionmaker.begin() as session:
            issued = await auth_service.create_caller(session, name=f"svc-{uuid.uuid4().hex[:10]}")
            return issued.key

    return create


def gateway_client(app: FastAPI, key: str | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", headers=headers)


@pytest.fixture
async def api(gateway_app: FastAPI, new_caller_key: NewCaller) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_app, await new_caller_key()) as client:
        yield client


@pytest.fixture
async def other_api(gateway_app: FastAPI, new_caller_key: NewCaller) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_app, await new_caller_key()) as client:
        yield client
