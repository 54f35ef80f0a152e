"""Throwaway Postgres databases on the local server (127.0.0.1:5432, trust auth), one per test run."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg

from app import migrate

ADMIN_DSN = os.environ.get("VG_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def asyncpg_dsn(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


def sqlalchemy_url(name: str) -> str:
    return asyncpg_dsn(name).replace("postgresql://", "postgresql+asyncpg://", 1)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database(prefix: str = "vg_test") -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class MigratedDatabase:
    url: str  # SQLAlchemy's (`postgresql+asyncpg://`)
    dsn: str  # asyncpg's


@contextmanager
def migrated_database(prefix: str) -> Iterator[MigratedDatabase]:
    """A throwaway database with every migration applied, dropped afterwards: for a module whose rows must be
    its own (a worker that claims whatever is queued, counts that must be exact)."""
    name = create_database(prefix)
    try:
        url = sqlalchemy_url(name)
        migrate.upgrade(url)
        yield MigratedDatabase(url=url, dsn=asyncpg_dsn(name))
    finally:
        drop_database(name)
