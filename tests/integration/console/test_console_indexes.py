"""With 100,000 videos, every page query of the console is an ordered index scan: no Seq Scan, no Sort.

Checked on the plan (EXPLAIN), not on a timer: a plan does not flake on a busy machine, and it is what makes
page 1,000 cost what page 1 costs. The rows live in a database of this test's own (the shared one stays small).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from app import migrate
from app.videos.repository import Direction, VideoCursor, page_statement
from tests.support import postgres

ROWS = 100_000
CALLERS = [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)]
# SQLAlchemy's dialect classes are unannotated (no-untyped-call); the one instance, typed here.
DIALECT: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
OUR_INDEXES = {"ix_videos_created_at_id", "ix_videos_status_created_at_id", "ix_videos_caller_id_created_at_id"}


@pytest.fixture(scope="module")
def big_database() -> Iterator[str]:
    name = postgres.create_database("vg_console_explain")
    try:
        migrate.upgrade(postgres.sqlalchemy_url(name))
        asyncio.run(_fill(postgres.asyncpg_dsn(name)))
        yield postgres.asyncpg_dsn(name)
    finally:
        postgres.drop_database(name)


async def _fill(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for index, caller_id in enumerate(CALLERS):
            await connection.execute("INSERT INTO callers (id, name) VALUES ($1, $2)", caller_id, f"caller-{index}")
        # Statuses and callers spread over the rows; one row a minute back from now, a few sharing an instant.
        await connection.execute(
            """
            INSERT INTO videos (id, caller_id, model, size, seconds, prompt, status, progress, created_at, updated_at)
            SELECT 'video_' || lpad(n::text, 8, '0'),
                   (ARRAY[$1, $2, $3]::uuid[])[1 + n % 3],
                   'sora-2', '1280x720', '4', 'seeded',
                   (ARRAY['queued', 'in_progress', 'completed', 'failed'])[1 + (n / 7) % 4],
                   0,
                   now() - make_interval(mins => n / 2),
                   now()
            FROM generate_series(1, $4::int) AS n
            """,
            *CALLERS,
            ROWS,
        )
        await connection.execute("ANALYZE videos")
        assert await connection.fetchval("SELECT count(*) FROM videos") == ROWS
    finally:
        await connection.close()


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def explain(dsn: str, sql: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(dsn)
        try:
            raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}")
            return list(_plan_nodes(json.loads(raw)[0]["Plan"]))
        finally:
            await connection.close()

    return asyncio.run(run())


CURSOR = VideoCursor(datetime.now(UTC) - timedelta(days=20), "video_00057600")


@pytest.mark.parametrize("direction", ["older", "newer"])
@pytest.mark.parametrize("cursor", [None, CURSOR], ids=["first-page", "deep-page"])
@pytest.mark.parametrize(
    ("status", "caller_id"),
    [(None, None), ("failed", None), (None, CALLERS[1]), ("completed", CALLERS[2])],
    ids=["all", "by-status", "by-caller", "by-status-and-caller"],
)
def test_a_page_is_an_ordered_index_scan(
    big_database: str, status: str | None, caller_id: uuid.UUID | None, cursor: VideoCursor | None, direction: Direction
) -> None:
    statement = page_statement(status=status, caller_id=caller_id, cursor=cursor, direction=direction, limit=51)
    sql = str(statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True}))
    nodes = explain(big_database, sql)
    kinds = [node["Node Type"] for node in nodes]
    assert "Seq Scan" not in kinds, kinds
    assert not any("Sort" in kind for kind in kinds), kinds  # neither Sort nor Incremental Sort
    assert not any(kind.startswith("Bitmap") for kind in kinds), kinds  # a bitmap scan loses the order
    used = {node.get("Index Name") for node in nodes if node["Node Type"] in ("Index Scan", "Index Only Scan")}
    assert used & OUR_INDEXES, (kinds, used)
