"""A receiver app over ASGI on the run's real Postgres (helpers: tests/support/webhooks.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.db import Database
from tests.support.settings import make_settings
from tests.support.webhooks import Db, build_receiver_app, client_of, running


@pytest.fixture(scope="session")
def receiver_settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def receiver_app(receiver_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running(build_receiver_app(receiver_settings)) as app:
        yield app


@pytest.fixture
async def client(receiver_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(receiver_app) as client:
        yield client


@pytest.fixture(scope="session")
def db(database: Database) -> Db:
    return Db(database)
