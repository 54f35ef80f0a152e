"""In-process stack: the gateway app over ASGI, its upstream the simulator app over ASGI, real Postgres; and the
archive worker's stack (`archive_stack`). Fixtures only: helpers are in `tests/support/`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.core.config import S3Settings, SimulatorSettings
from app.core.db import Database
from app.main import create_app
from app.simulator import create_simulator_app
from app.upstream.router import UpstreamRouter
from tests.support.factories import make_caller
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import SIMULATOR_KEY, make_settings
from tests.support.transports import CountingTransport
from tests.support.worker import ArchiveStack, worker_settings


@pytest.fixture(scope="session")
async def simulator_app() -> AsyncIterator[FastAPI]:
    settings = SimulatorSettings(
        api_key=SecretStr(SIMULATOR_KEY),
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


@pytest.fixture(scope="session")
def new_caller_key(database: Database) -> NewCaller:
    """Creates a caller with a fresh key and returns the key."""

    async def create() -> str:
        return (await make_caller(database)).key

    return create


@pytest.fixture
async def api(gateway_app: FastAPI, new_caller_key: NewCaller) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_app, await new_caller_key()) as client:
        yield client


@pytest.fixture
async def other_api(gateway_app: FastAPI, new_caller_key: NewCaller) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_app, await new_caller_key()) as client:
        yield client


@pytest.fixture
async def archive_stack(
    database_url: str,
    simulator_app: FastAPI,
    s3_settings: S3Settings,
    new_caller_key: NewCaller,
    database: Database,
) -> AsyncIterator[ArchiveStack]:
    """An in-process archive worker's world: real Postgres, real SeaweedFS, the simulator app as upstream (ASGI).
    The worker tests' stack, reused by the callback and observability tests."""
    settings = make_settings(database_url).model_copy(update={"s3": s3_settings, "worker": worker_settings()})
    upstream_transport = httpx.ASGITransport(app=simulator_app)
    app = create_app(settings, upstream_transport=upstream_transport)
    upstreams = UpstreamRouter(settings, transport=upstream_transport)
    storage = ArchiveStorage(s3_settings)
    await storage.ensure_bucket()
    simulator = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulator_app),
        base_url="http://upstream.test",
        headers={"authorization": f"Bearer {SIMULATOR_KEY}"},
    )
    async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as api:
        context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
        yield ArchiveStack(settings, api, simulator, database, storage, context)
    await simulator.put("/_sim/faults", json={})
    await simulator.aclose()
    await upstreams.aclose()
    storage.close()
