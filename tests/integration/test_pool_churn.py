"""The default pool keeps its connections: a burst wider than the pool waits for one instead of opening (and,
once done, closing) a new Postgres backend per use, the churn that halved webhook ingest past 20 concurrent
deliveries (app/core/config.py, `DatabaseSettings`)."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from sqlalchemy import text

from app.core.config import DatabaseSettings
from app.core.db import Database

# The least that still makes a burst of these overlap on the pool: each statement holds its connection this long.
HOLD = text("SELECT pg_backend_pid() AS pid FROM pg_sleep(0.05)")


async def backends_used(database: Database, *, at_once: int, waves: int) -> set[int]:
    seen: set[int] = set()
    for _ in range(waves):
        rows = await asyncio.gather(*(database.fetch_alone(HOLD, {}) for _ in range(at_once)))
        seen.update(int(row[0]["pid"]) for row in rows)
    return seen


async def test_a_burst_wider_than_the_pool_reuses_its_connections(database_url: str) -> None:
    defaults = DatabaseSettings(url=SecretStr(database_url))
    database = Database.connect(defaults)
    try:
        backends = await backends_used(database, at_once=defaults.pool_size + 10, waves=3)
    finally:
        await database.dispose()
    # Every wave ran on the same pooled backends; none was opened for one use and closed after it.
    assert len(backends) <= defaults.pool_size


async def test_with_overflow_the_same_burst_opens_backends_per_use(database_url: str) -> None:
    """The control: the same burst on a pool that may overflow, as the default once did, churns."""
    database = Database.connect(DatabaseSettings(url=SecretStr(database_url), pool_size=5, max_overflow=5))
    try:
        backends = await backends_used(database, at_once=10, waves=3)
    finally:
        await database.dispose()
    assert len(backends) > 10
