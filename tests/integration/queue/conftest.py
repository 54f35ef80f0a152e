"""Queue tests get their own migrated database each (they commit, claim concurrently and kill backends)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sqlalchemy import text

from app import migrate
from app.core.config import DatabaseSettings
from app.core.db import Database
from tests.support import postgres


@pytest.fixture
def queue_database_url() -> Iterator[str]:
    name = postgres.create_database("vg_queue")
    url = postgres.sqlalchemy_url(name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture
async def qdb(queue_database_url: str) -> AsyncIterator[Database]:
    database = Database.connect(DatabaseSettings(url=queue_database_url, pool_size=25, max_overflow=5))  # type: ignore[arg-type]
    yield database
    await database.dispose()


MakeVideo = Callable[..., Awaitable[str]]


@pytest.fixture
def make_video(qdb: Database) -> MakeVideo:
    """Insert a caller-owned video row directly; returns its id."""

    async def make(status: str = "completed", upstream_id: str | None = None) -> str:
        video_id = "video_" + uuid.uuid4().hex
        caller_id = uuid.uuid4()
        async with qdb.sessionmaker.begin() as session:
            await session.execute(
                text("INSERT INTO callers (id, name) VALUES (:id, :name)"), {"id": caller_id, "name": str(caller_id)}
            )
            await session.execute(
                text(
                    "INSERT INTO videos (id, caller_id, upstream_id, model, size, seconds, prompt, status, progress)"
                    " VALUES (:id, :caller, :upstream, 'sora-2', '720x1280', '4', 'p', :status, 0)"
                ),
                {"id": video_id, "caller": caller_id, "upstream": upstream_id or "up_" + video_id, "status": status},
            )
        return video_id

    return make
