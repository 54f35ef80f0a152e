"""A dead pooled connection never fails a request or a job (app/core/db.py), with no pre-ping: a connection
seen closed while idle is replaced at checkout, and a transaction's first statement that finds its connection
dead runs once more on a new one. A statement after the first is never replayed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError

from app.core import db
from app.core.config import DatabaseSettings
from app.core.db import Database, run_without_transaction
from app.models import Caller


@pytest.fixture
async def pool_of_one(database_url: str) -> AsyncIterator[Database]:
    database = Database.connect(DatabaseSettings(url=SecretStr(database_url), pool_size=1, max_overflow=0))
    yield database
    await database.dispose()


def plain_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def backend_of(database: Database) -> int:
    async with database.sessionmaker() as session:
        pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await session.commit()
    return pid


async def terminate(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect(plain_dsn(database_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        # Gone on the server's side before the test goes on.
        while await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            await admin.execute("SELECT pg_stat_clear_snapshot()")
    finally:
        await admin.close()


class TestADeadPooledConnection:
    async def test_is_replaced_at_checkout(self, pool_of_one: Database, database_url: str) -> None:
        before = await backend_of(pool_of_one)
        await terminate(database_url, before)
        assert await backend_of(pool_of_one) != before

    async def test_a_first_statement_on_it_is_retried_once(self, pool_of_one: Database, database_url: str) -> None:
        """Checkout does not see it (the loop has not yet read the EOF, or a proxy keeps the socket open)."""
        engine = pool_of_one.engine.sync_engine
        event.remove(engine, "checkout", db._refuse_closed_connection)
        before = await backend_of(pool_of_one)
        await terminate(database_url, before)
        async with pool_of_one.sessionmaker() as session:
            await run_without_transaction(session)
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() != before
        # And in a transaction that writes: the retried statement is the transaction's first.
        await terminate(database_url, await backend_of(pool_of_one))
        async with pool_of_one.transaction() as session:
            await session.execute(text("CREATE TEMP TABLE t (n int)"))
            await session.execute(text("INSERT INTO t VALUES (1)"))
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1

    async def test_a_later_statement_is_not_replayed(self, pool_of_one: Database, database_url: str) -> None:
        async with pool_of_one.sessionmaker() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await terminate(database_url, pid)
            with pytest.raises(DBAPIError) as raised:
                await session.execute(text("SELECT 1"))
            assert raised.value.connection_invalidated
        assert await backend_of(pool_of_one) != pid  # and the pool has moved on

    async def test_a_session_holding_objects_is_not_replayed(self, pool_of_one: Database, database_url: str) -> None:
        """A rollback would drop what it holds: the disconnect is raised instead (the caller retries)."""
        engine = pool_of_one.engine.sync_engine
        event.remove(engine, "checkout", db._refuse_closed_connection)
        async with pool_of_one.sessionmaker() as session:
            session.add(Caller(name=f"held-{uuid.uuid4().hex[:8]}"))
            await terminate(database_url, await backend_of(pool_of_one))
            with pytest.raises(DBAPIError):
                await session.execute(text("SELECT 1"))


SLEEP_THEN_PID = text("SELECT pg_backend_pid() AS pid FROM pg_sleep(:seconds)")
DIVIDE = text("SELECT 1 / :zero AS quotient")


async def pid_alone(database: Database) -> int:
    [row] = await database.fetch_alone(SLEEP_THEN_PID, {"seconds": 0})
    return int(row["pid"])


class TestAStatementRunAlone:
    """`Database.fetch_alone` (decision 012): the same rule on the driver, without a session."""

    async def test_a_dead_connection_is_retried_once_on_a_fresh_one(
        self, pool_of_one: Database, database_url: str
    ) -> None:
        engine = pool_of_one.engine.sync_engine
        event.remove(engine, "checkout", db._refuse_closed_connection)  # so the dead one is handed out
        before = await pid_alone(pool_of_one)
        await terminate(database_url, before)
        assert await pid_alone(pool_of_one) != before

    async def test_a_cancelled_statement_closes_its_connection_instead_of_returning_it(
        self, pool_of_one: Database
    ) -> None:
        """Its reply may still be on the way: the connection must not serve the next checkout."""
        before = await pid_alone(pool_of_one)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool_of_one.fetch_alone(SLEEP_THEN_PID, {"seconds": 5}), timeout=0.2)
        assert pool_of_one.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await pid_alone(pool_of_one) != before

    async def test_a_statements_own_error_is_raised_and_its_connection_kept(self, pool_of_one: Database) -> None:
        before = await pid_alone(pool_of_one)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool_of_one.fetch_alone(DIVIDE, {"zero": 0})
        assert await pid_alone(pool_of_one) == before

    async def test_a_connection_ended_but_not_yet_seen_closed_is_retried_on_a_fresh_one(
        self, pool_of_one: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The server's FATAL notice was read, its EOF not yet: asyncpg refuses to start the statement at all."""
        before = await pid_alone(pool_of_one)
        refusals = 0
        execute = asyncpg.connection.Connection._execute

        async def ending(self: asyncpg.Connection, *args: object, **kwargs: object) -> object:
            nonlocal refusals
            if refusals == 0:
                refusals += 1
                raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
            return await execute(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.connection.Connection, "_execute", ending)
        assert await pid_alone(pool_of_one) != before  # answered, from a new connection
        assert refusals == 1

    async def test_a_connection_lost_twice_is_a_disconnection(
        self, pool_of_one: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def lost(self: asyncpg.Connection, *args: object, **kwargs: object) -> None:
            self.terminate()
            raise ConnectionResetError("connection lost under the statement")

        monkeypatch.setattr(asyncpg.connection.Connection, "_execute", lost)
        with pytest.raises(DisconnectionError):
            await pid_alone(pool_of_one)
        monkeypatch.undo()
        assert pool_of_one.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await pid_alone(pool_of_one)
