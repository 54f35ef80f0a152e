"""A model no profile serves is a 400 naming `model` and listing the served models, before anything is
charged, stored or sent; `["*"]` as the default profile's models keeps the old pass-through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.config import UpstreamProfile
from app.core.db import Database
from app.main import create_app
from app.models import Video
from tests.support.gateway import NewCaller, gateway_client
from tests.support.settings import make_settings
from tests.support.transports import CountingTransport

GatewayFactory = Callable[..., AbstractAsyncContextManager[tuple[httpx.AsyncClient, CountingTransport]]]


@pytest.fixture
def gateway(database_url: str, simulator_app: FastAPI, new_caller_key: NewCaller) -> GatewayFactory:
    @asynccontextmanager
    async def build(
        *, default_models: list[str] | None = None, **profiles: UpstreamProfile
    ) -> AsyncIterator[tuple[httpx.AsyncClient, CountingTransport]]:
        base = make_settings(database_url)
        upstream = base.upstream
        if default_models is not None:
            upstream = upstream.model_copy(update={"models": default_models})
        settings = base.model_copy(update={"upstream": upstream, "upstreams": profiles})
        counting = CountingTransport(httpx.ASGITransport(app=simulator_app))
        app = create_app(settings, upstream_transport=counting)
        async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as client:
            yield client, counting

    return build


async def create(client: httpx.AsyncClient, model: str, **fields: Any) -> httpx.Response:
    return await client.post("/v1/videos", json={"prompt": "a kite", "model": model, **fields})


async def videos_with_model(database: Database, model: str) -> int:
    async with database.sessionmaker() as session:
        count: int = (await session.execute(select(func.count()).where(Video.model == model))).scalar_one()
        return count


class TestUnknownModel:
    async def test_is_a_400_naming_model_and_listing_the_served_models_before_anything_happens(
        self, gateway: GatewayFactory, database: Database
    ) -> None:
        async with gateway() as (client, upstream):
            refused = await create(client, "sora-9-imaginary")
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["param"] == "model"
            assert error["code"] == "invalid_value"
            assert "'sora-9-imaginary'" in error["message"]
            assert "'sora-2'" in error["message"] and "'sora-2-pro'" in error["message"]
            assert upstream.count("POST", "/v1/videos") == 0
        assert await videos_with_model(database, "sora-9-imaginary") == 0

    async def test_the_served_list_includes_every_profile(self, gateway: GatewayFactory) -> None:
        veo = UpstreamProfile(
            kind="gemini", base_url="http://gemini.test", models=["veo-3.1-generate-preview"], sends_webhooks=False
        )
        async with gateway(veo=veo) as (client, _):
            error = (await create(client, "veo-9")).json()["error"]
            assert error["param"] == "model"
            for model in ("sora-2", "sora-2-pro", "veo-3.1-generate-preview"):
                assert f"'{model}'" in error["message"]

    async def test_the_served_models_still_render(self, gateway: GatewayFactory) -> None:
        async with gateway() as (client, _):
            for model in ("sora-2", "sora-2-pro"):
                response = await create(client, model)
                assert response.status_code == 200, response.text
                assert response.json()["model"] == model

    async def test_a_star_in_the_default_profile_passes_every_model_through(self, gateway: GatewayFactory) -> None:
        async with gateway(default_models=["*"]) as (client, upstream):
            response = await create(client, "sora-9-imaginary")
            assert response.status_code == 200, response.text
            assert upstream.count("POST", "/v1/videos") == 1
