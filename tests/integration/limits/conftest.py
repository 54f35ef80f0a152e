"""Gateways with custom limits and an admin key, over the run's Postgres and the in-process simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.auth import service as auth_service
from app.core.db import Database
from app.main import create_app
from tests.conftest import make_settings
from tests.integration.conftest import gateway_client
from tests.support.transports import CountingTransport

ADMIN_KEY = "vg-admin-test-key-0123456789"


@dataclass(frozen=True)
class Gateway:
    app: FastAPI
    upstream: CountingTransport

    def client(self, key: str | None) -> httpx.AsyncClient:
        return gateway_client(self.app, key)

    @property
    def creates(self) -> int:
        """Render requests that reached upstream (creates and remixes)."""
        return self.upstream.count("POST", "/v1/videos")


GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def limited_gateway(database_url: str, simulator_app: FastAPI) -> GatewayFactory:
    """`async with limited_gateway(budget_usd_per_period=1.2, admin=True) as gateway:` (LimitSettings fields;
    `default_models` replaces the default profile's models)."""

    @asynccontextmanager
    async def build(
        *, admin: bool = True, default_models: list[str] | None = None, **limits: Any
    ) -> AsyncIterator[Gateway]:
        base = make_settings(database_url)
        upstream = base.upstream
        if default_models is not None:
            upstream = upstream.model_copy(update={"models": default_models})
        settings = base.model_copy(
            update={
                "limits": base.limits.model_copy(update=limits),
                "admin_api_key": SecretStr(ADMIN_KEY) if admin else None,
                "upstream": upstream,
            }
        )
        upstream = CountingTransport(httpx.ASGITransport(app=simulator_app))
        app = create_app(settings, upstream_transport=upstream)
        async with app.router.lifespan_context(app):
            yield Gateway(app=app, upstream=upstream)

    return build


@dataclass(frozen=True)
class NewCallerInfo:
    id: uuid.UUID
    name: str
    key: str
    key_id: uuid.UUID


@pytest.fixture
def make_caller(database: Database) -> Callable[[], Awaitable[NewCallerInfo]]:
    async def create() -> NewCallerInfo:
        async with database.sessionmaker.begin() as session:
            issued = await auth_service.create_caller(session, name=f"lim-{uuid.uuid4().hex[:10]}")
            return NewCallerInfo(id=issued.caller.id, name=issued.caller.name, key=issued.key, key_id=issued.api_key.id)

    return create


async def create_video(client: httpx.AsyncClient, prompt: str = "a paper boat", **fields: str) -> httpx.Response:
    return await client.post(
        "/v1/videos", files={"prompt": (None, prompt), **{k: (None, v) for k, v in fields.items()}}
    )


def assert_error(response: httpx.Response, status: int, code: str, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    if type_ is not None:
        assert error["type"] == type_, error
    return error
