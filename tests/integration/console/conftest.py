"""A gateway with the console switched on (admin key set, small pages), and a signed-in browser-like client
(helpers: tests/support/console.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.core.config import S3Settings
from app.main import create_app
from tests.support.console import ADMIN_KEY, PAGE_SIZE, browser, sign_in
from tests.support.settings import make_settings
from tests.support.transports import CountingTransport


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
