"""Gateways with custom limits and an admin key, over the run's Postgres and the in-process simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.main import create_app
from tests.support.limits import ADMIN_KEY, Gateway, GatewayFactory
from tests.support.settings import make_settings
from tests.support.transports import CountingTransport


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
        transport = CountingTransport(httpx.ASGITransport(app=simulator_app))
        app = create_app(settings, upstream_transport=transport)
        async with app.router.lifespan_context(app):
            yield Gateway(app=app, upstream=transport)

    return build
