"""Extra gateways with their own settings or upstream behaviour (helpers: tests/support/idempotency.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.support.gateway import NewCaller, gateway_client
from tests.support.idempotency import GatewayFactory
from tests.support.settings import make_settings


@pytest.fixture
def own_gateway(database_url: str, new_caller_key: NewCaller) -> GatewayFactory:
    """`async with own_gateway(upstream, ttl_seconds=..., **api_settings) as client`: a gateway of its own, one
    new caller."""

    @asynccontextmanager
    async def build(
        upstream: httpx.AsyncBaseTransport, *, ttl_seconds: float | None = None, **api: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings: Settings = make_settings(database_url, **api)
        if ttl_seconds is not None:
            settings = settings.model_copy(
                update={"idempotency": settings.idempotency.model_copy(update={"ttl_seconds": ttl_seconds})}
            )
        app: FastAPI = create_app(settings, upstream_transport=upstream)
        async with app.router.lifespan_context(app), gateway_client(app, await new_caller_key()) as client:
            yield client

    return build
