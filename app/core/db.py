"""Database plumbing: the declarative base (with a constraint naming convention), engines and sessions, and
what keeps a dead pooled connection from failing a request or a job.

The engine and session factory are built once per process (the API's lifespan, the worker's start) and
kept on `Database`. A request gets its session from `SessionDep` (app/deps.py), which owns the transaction.
Services only `flush()`.

Dead connections (a Postgres restart, `pg_terminate_backend`, a proxy closing idle ones) are handled without a
pre-ping, which with asyncpg costs three round trips (BEGIN, `;`, ROLLBACK) on every checkout:

- at checkout, a connection whose socket is already known closed is discarded and another taken (a local
  check: the event loop has seen the server's FATAL and the EOF of a connection that died while idle);
- a statement that finds its connection dead is run once more on a fresh connection, but only when it was the
  first statement of a fresh session's transaction (nothing done on the dead connection can be lost or
  repeated); a later one fails as before, and its caller's own retry (the worker's job retry, the client's)
  takes over. Sessions open their transactions with `Database.transaction()` (or a request's session), not
  `sessionmaker.begin()`, so that their first statement qualifies. In a transaction, the dead connection's
  work was never committed. In autocommit it may have been, just before the connection died: the statements
  run that way are reads, the rate counter (a request counted twice) and the webhook record (its repeat finds
  the first and answers `duplicate`), all harmless to run twice.

Reads that need no transaction (a retrieve, a list, a key's rate counter: one statement, or several that may
see different snapshots) run in autocommit (`run_without_transaction`), which saves BEGIN and COMMIT: two
round trips of a request that otherwise needs two.

The hottest single statements (the webhook receiver's record, the key's rate counter, a download's start:
decision 012; a retrieve's read and a list's page: decision 013) skip the session altogether:
`Database.fetch_alone` runs one textual statement on a pooled connection's own asyncpg connection, in autocommit,
and gives its rows back. The same dead-connection rule holds: a statement whose connection turns out dead runs once
more on a fresh one (such statements are written to be harmless twice), and a second loss is a
`DisconnectionError`, which the API answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import asyncpg
from sqlalchemy import Dialect, MetaData, TextClause, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, SessionTransaction, SessionTransactionOrigin
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from app.core.config import DatabaseSettings

logger = logging.getLogger(__name__)

# Explicit names make Alembic migrations reversible and diffs stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Session.info key: the session's current connection has run no statement yet (so a disconnect on the next one
# loses nothing).
_UNUSED_CONNECTION = "vg_unused_connection"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RetryingSession(Session):
    """A session whose transaction's first statement is retried once on a fresh connection after a disconnect."""


@event.listens_for(RetryingSession, "after_begin")
def _connection_joined(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    session.info[_UNUSED_CONNECTION] = True


@event.listens_for(RetryingSession, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    session.info.pop(_UNUSED_CONNECTION, None)


@event.listens_for(RetryingSession, "after_flush")
def _flushed(session: Session, flush_context: Any) -> None:
    session.info[_UNUSED_CONNECTION] = False


def _replayable(session: Session) -> bool:
    """Nothing would be lost by rolling back and running the statement again: the transaction was begun by the
    statement's own session (not a `begin()` block, which a rollback would close under its owner), nothing ran
    on its connection yet, and the session holds no object a rollback would expire or drop."""
    transaction = session.get_transaction()
    return (
        (transaction is None or transaction.origin is SessionTransactionOrigin.AUTOBEGIN)
        and session.info.get(_UNUSED_CONNECTION, True)
        and not session.identity_map
        and not session.new
        and not session.deleted
    )


@event.listens_for(RetryingSession, "do_orm_execute")
def _retry_first_statement(state: ORMExecuteState) -> Any:
    session = state.session
    if not _replayable(session):
        return None  # a disconnect now is the caller's to handle (the job's retry, the client's)
    try:
        result = state.invoke_statement()
    except DBAPIError as error:
        if not error.connection_invalidated or not _replayable(session):
            raise
        logger.warning("database connection lost before its first statement; retrying once on a new connection")
        session.rollback()
        result = state.invoke_statement()
    session.info[_UNUSED_CONNECTION] = False
    return result


def _refuse_closed_connection(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """Pool checkout: a connection the event loop already saw closed is replaced (the pool retries)."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("pooled connection was closed while idle")


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, settings: DatabaseSettings) -> Database:
        engine = create_async_engine(
            settings.url.get_secret_value(),
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            echo=settings.echo,
        )
        return cls.of(engine)

    @classmethod
    def of(cls, engine: AsyncEngine) -> Database:
        """The database behind `engine`, with the dead-connection handling above installed on its pool."""
        if not event.contains(engine.sync_engine, "checkout", _refuse_closed_connection):
            event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
        return cls(
            engine=engine,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False, sync_session_class=RetryingSession),
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits when the block ends, or rolls back if it raises.

        Unlike `sessionmaker.begin()`, the transaction is begun by its first statement, so that statement may be
        run again on a fresh connection after a disconnect (above); and the block may commit midway and go on
        in a new transaction.
        """
        async with self.sessionmaker() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def fetch_alone(self, statement: TextClause, params: Mapping[str, object]) -> list[asyncpg.Record]:
        """The rows of one textual statement run on its own (autocommit) on the driver: no session, no ORM.

        For statements that are whole on their own and harmless to run twice: one whose connection turns out
        dead (closed while idle, or lost under it) runs once more on a fresh connection; lost again, it raises
        `DisconnectionError`. Any other error is the statement's, raised as asyncpg raised it.
        """
        sql, names = driver_form(statement, self.engine.dialect)
        args = [params[name] for name in names]
        for attempt in (1, 2):
            pooled = await self.engine.raw_connection()
            driver: asyncpg.Connection = pooled.driver_connection
            healthy = False
            try:
                rows: list[asyncpg.Record] = await driver.fetch(sql, *args)
                healthy = True
                return rows
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as lost:
                # A connection the server has just ended may still look open: its FATAL notice is read, its EOF
                # not yet, and the driver refuses to start the statement ("another operation is in progress").
                # Nothing was sent, so it counts as lost, whatever `is_closed` says this instant.
                unusable = isinstance(lost, asyncpg.InternalClientError)
                if not unusable and not driver.is_closed():
                    # The connection lives: the error is the statement's. After the server's error the
                    # connection is in step again and goes back to the pool; after anything else it is closed.
                    healthy = isinstance(lost, asyncpg.PostgresError)
                    raise
                if attempt == 2:
                    raise DisconnectionError("the database connection was lost twice under one statement") from lost
                logger.warning("database connection lost under a statement run alone; retrying once on a new one")
            finally:
                await _give_back(pooled, driver, healthy=healthy)
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def run_without_transaction(session: AsyncSession) -> None:
    """Make the session's statements, until its next commit or rollback, each commit on its own (autocommit).

    Call it before the session's first statement. For reads that need no snapshot spanning several statements:
    no BEGIN and no COMMIT are sent. A commit ends it; the session's next statement opens a real transaction.
    """
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@cache
def driver_form(statement: TextClause, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The statement as asyncpg takes it (`$1`, `$2`, …) and the names of its parameters in that order, compiled
    once per statement: the compile costs more than the round trip."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ())


async def _give_back(pooled: PoolProxiedConnection, driver: asyncpg.Connection, *, healthy: bool) -> None:
    """Return the connection to the pool, or, after an error or a cancel (a reply may still be on its way, or the
    socket is gone), close it for good so that no later checkout reads what this statement left."""
    if not healthy:
        if not driver.is_closed():
            driver.terminate()
        pooled.invalidate()
    # The pool's return (its reset) runs SQLAlchemy's sync-over-async adapter, which needs a greenlet; shielded, so
    # a cancel arriving now cannot leave the connection checked out forever.
    await asyncio.shield(greenlet_spawn(pooled.close))
