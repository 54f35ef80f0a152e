"""The facade's reads do the least their guarantees need: a retrieve or a list by a known key costs two
statements (the key's rate counter; the video with its asset rows, or the page), and neither BEGIN nor COMMIT;
a retrieve that refreshes from upstream writes in a real transaction. Counted on the wire: SQLAlchemy's
statement events, and asyncpg's log of what it sends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import Database
from app.core.resources import resources_of
from app.main import create_app
from app.models import VideoStatus
from tests.support.factories import make_caller, make_video
from tests.support.gateway import gateway_client
from tests.support.limits import ADMIN_KEY
from tests.support.settings import make_settings
from tests.support.wire import on_the_wire


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url).model_copy(update={"admin_api_key": SecretStr(ADMIN_KEY)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def engine_of(app: FastAPI) -> AsyncEngine:
    return resources_of(app).database.engine


async def test_a_retrieve_and_a_list_cost_no_transaction(gateway: FastAPI, database: Database) -> None:
    caller = await make_caller(database)
    video = await make_video(database, caller=caller)
    async with gateway_client(gateway, caller.key) as client:
        assert (await client.get("/v1/videos")).status_code == 200  # the key is now remembered
        for path in (f"/v1/videos/{video.id}", "/v1/videos"):
            with on_the_wire(engine_of(gateway)) as (statements, control):
                response = await client.get(path)
            assert response.status_code == 200, response.text
            assert len(statements) == 2, statements
            assert "key_request_windows" in statements[0]
            assert control == [], control


async def test_a_retrieve_that_refreshes_writes_in_a_transaction(gateway: FastAPI, database: Database) -> None:
    """An unfinished video is read from upstream (here: no upstream answers, so nothing is applied) in a real
    transaction once it left autocommit: the refresh's writes, when there are any, commit together."""
    caller = await make_caller(database)
    video = await make_video(database, caller=caller, status=VideoStatus.IN_PROGRESS, refreshed_at=None)
    async with gateway_client(gateway, caller.key) as client:
        assert (await client.get("/v1/videos")).status_code == 200
        with on_the_wire(engine_of(gateway)) as (statements, control):
            response = await client.get(f"/v1/videos/{video.id}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "in_progress"
        assert any(query.startswith("BEGIN") for query in control), (statements, control)
