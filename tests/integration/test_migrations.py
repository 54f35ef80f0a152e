"""Migrations run forwards and backwards cleanly, and the models match the migrated schema exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

import app.models
from app import migrate
from tests.support import postgres


@pytest.fixture
def scratch_url() -> Iterator[str]:
    name = postgres.create_database("vg_migrations")
    try:
        yield postgres.sqlalchemy_url(name)
    finally:
        postgres.drop_database(name)


def tables_and_diff(url: str) -> tuple[set[str], list[object]]:
    async def read() -> tuple[set[str], list[object]]:
        engine = create_async_engine(url)
        async with engine.connect() as connection:

            def inspect_sync(sync_connection: object) -> tuple[set[str], list[object]]:
                tables = set(inspect(sync_connection).get_table_names())
                context = MigrationContext.configure(sync_connection, opts={"compare_type": True})  # type: ignore[arg-type]
                return tables, list(compare_metadata(context, app.models.Base.metadata))

            result = await connection.run_sync(inspect_sync)
        await engine.dispose()
        return result

    return asyncio.run(read())


def test_upgrade_downgrade_upgrade_and_no_drift(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    tables, diff = tables_and_diff(scratch_url)
    assert {"callers", "api_keys", "videos", "assets"} <= tables
    assert diff == []

    migrate.downgrade(scratch_url, "base")
    tables, _ = tables_and_diff(scratch_url)
    assert tables == {"alembic_version"}

    migrate.upgrade(scratch_url)
    _, diff = tables_and_diff(scratch_url)
    assert diff == []
