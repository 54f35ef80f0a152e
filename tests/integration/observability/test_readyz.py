"""`/readyz`: 200 when Postgres, the bucket and the schema are all there; else 503 naming the failed check."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI

from app import migrate
from app.core.config import S3Settings, Settings
from app.main import create_app
from tests.support import postgres
from tests.support.settings import make_settings


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def readyz(settings: Settings) -> httpx.Response:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client,
    ):
        return await client.get("/readyz")


@pytest.fixture
def database_at_0007() -> Iterator[str]:
    name = postgres.create_database("vg_readyz")
    url = postgres.sqlalchemy_url(name)
    try:
        migrate.upgrade(url, "0007")
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture
async def ready_app(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway_app), base_url="http://gateway.test") as c:
        yield c


async def test_ready_when_every_check_passes(ready_app: httpx.AsyncClient) -> None:
    response = await ready_app.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}
    assert (await ready_app.get("/healthz")).json() == {"status": "ok"}


async def test_not_ready_when_the_bucket_is_unreachable(database_url: str, seaweedfs_s3: S3Settings) -> None:
    s3 = seaweedfs_s3.model_copy(update={"endpoint_url": f"http://127.0.0.1:{closed_port()}"})
    settings = make_settings(database_url).model_copy(update={"s3": s3})
    response = await readyz(settings)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready" and error["param"] == "s3" and error["type"] == "server_error"
    assert error["message"].startswith("Not ready: s3: ")
    for secret in (s3.secret_access_key.get_secret_value(), s3.access_key_id.get_secret_value(), "127.0.0.1"):
        assert secret not in response.text


async def test_not_ready_when_the_schema_is_behind_the_migrations(
    database_at_0007: str, seaweedfs_s3: S3Settings
) -> None:
    settings = make_settings(database_at_0007).model_copy(update={"s3": seaweedfs_s3})
    response = await readyz(settings)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["param"] == "migrations"
    head = ScriptDirectory.from_config(migrate.alembic_config("")).get_current_head()  # the newest, whichever it is
    assert "0007" in error["message"] and f"not {head}" in error["message"]


async def test_not_ready_when_postgres_is_unreachable(seaweedfs_s3: S3Settings) -> None:
    url = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{closed_port()}/nothing"
    response = await readyz(make_settings(url).model_copy(update={"s3": seaweedfs_s3}))
    assert response.status_code == 503
    assert response.json()["error"]["param"] == "postgres,migrations"
    assert "hunter2" not in response.text
