"""Dev mode lets callbacks reach this machine's loopback (what `make run`'s receiver on :8102 needs); production
keeps default deny: the same create is a 400 `invalid_callback_url` there, with no allow-list configured."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import (
    DatabaseSettings,
    Mode,
    S3Settings,
    Settings,
    UpstreamSettings,
    WebhookSettings,
)
from app.core.db import Database
from app.main import create_app
from app.models import Video
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.transports import CountingTransport


@pytest.fixture(scope="module")
def listening_port() -> Iterator[int]:
    """A real loopback listener (the callback is only accepted at create here, not delivered)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def dev_settings(database_url: str, s3: S3Settings) -> Settings:
    # Built as `video-gateway serve` builds them (the validators run): dev mode, no allow-list configured.
    settings = make_settings(database_url)
    assert settings.mode is Mode.DEV
    return Settings(
        mode=Mode.DEV,
        db=settings.db,
        api=settings.api,
        upstream=settings.upstream,
        webhooks=settings.webhooks,
        s3=s3,
    )


def production_settings(database_url: str, s3: S3Settings) -> Settings:
    return Settings(
        mode=Mode.PRODUCTION,
        db=DatabaseSettings(url=database_url, pool_size=5),
        upstream=UpstreamSettings(
            base_url="http://upstream.test/v1",
            api_key="sk-production-looking-key",
            retry_base_seconds=0.01,
            retry_max_seconds=0.05,
        ),
        webhooks=WebhookSettings(secrets=TEST_WEBHOOK_SECRET),
        s3=s3,
    )


@pytest.fixture(scope="module")
async def dev_app(
    database_url: str, seaweedfs_s3: S3Settings, upstream_transport: CountingTransport
) -> AsyncIterator[FastAPI]:
    app = create_app(dev_settings(database_url, seaweedfs_s3), upstream_transport=upstream_transport)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def production_app(
    database_url: str, seaweedfs_s3: S3Settings, upstream_transport: CountingTransport
) -> AsyncIterator[FastAPI]:
    app = create_app(production_settings(database_url, seaweedfs_s3), upstream_transport=upstream_transport)
    async with app.router.lifespan_context(app):
        yield app


async def create(client: httpx.AsyncClient, callback_url: str) -> httpx.Response:
    return await client.post(
        "/v1/videos", files={"prompt": (None, "a loopback callback"), "callback_url": (None, callback_url)}
    )


class TestSettings:
    def test_dev_mode_adds_loopback_to_the_callback_allow_list(self, database_url: str) -> None:
        settings = make_settings(database_url)
        assert "127.0.0.0/8" in settings.callbacks.allowed_destinations
        assert "::1/128" in settings.callbacks.allowed_destinations

    def test_production_keeps_the_allow_list_as_configured(self, database_url: str, seaweedfs_s3: S3Settings) -> None:
        assert production_settings(database_url, seaweedfs_s3).callbacks.allowed_destinations == []
        configured = Settings(
            mode=Mode.PRODUCTION,
            upstream=UpstreamSettings(api_key="sk-x"),
            callbacks={"allowed_destinations": ["10.0.0.0/8"]},
        )
        assert configured.callbacks.allowed_destinations == ["10.0.0.0/8"]


class TestDevMode:
    @pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
    async def test_a_loopback_callback_url_is_accepted_and_stored(
        self, dev_app: FastAPI, database: Database, new_caller_key: NewCaller, listening_port: int, host: str
    ) -> None:
        url = f"http://{host}:{listening_port}/callbacks"
        async with gateway_client(dev_app, await new_caller_key()) as client:
            response = await create(client, url)
            assert response.status_code == 200, response.text
            video_id = response.json()["id"]
            async with database.sessionmaker() as session:
                video = await session.get(Video, video_id)
                assert video is not None and video.callback_url == url
            # Gone before any archive event could queue a callback to this test's port.
            assert (await client.delete(f"/v1/videos/{video_id}")).status_code == 200

    async def test_other_private_addresses_stay_refused(self, dev_app: FastAPI, new_caller_key: NewCaller) -> None:
        async with gateway_client(dev_app, await new_caller_key()) as client:
            response = await create(client, "http://10.0.0.1/hook")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_callback_url"


class TestProductionMode:
    @pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
    async def test_the_same_create_is_refused_with_400(
        self,
        production_app: FastAPI,
        new_caller_key: NewCaller,
        upstream_transport: CountingTransport,
        listening_port: int,
        host: str,
    ) -> None:
        creates_before = upstream_transport.count("POST", "/v1/videos")
        async with gateway_client(production_app, await new_caller_key()) as client:
            response = await create(client, f"http://{host}:{listening_port}/callbacks")
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_callback_url"
        assert error["param"] == "callback_url"
        assert "loopback" in error["message"]
        assert upstream_transport.count("POST", "/v1/videos") == creates_before
