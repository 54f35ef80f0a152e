"""Queue tests get their own migrated database each (they commit, claim concurrently and kill backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

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
    database = Database.connect(DatabaseSettings(url=queue_database_url, pool_size=25, max_overflow=5))
    yield database
    await database.dispose()
