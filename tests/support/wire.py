"""What an engine sends to Postgres while a block runs, seen from both of its paths: SQLAlchemy's cursor statements
(its `before_cursor_execute` event) and the statements run alone on the driver (`Database.fetch_alone`, decision
012), which asyncpg's query logger sees, as it sees transaction control (BEGIN, COMMIT, ROLLBACK: asyncpg's own,
not a cursor's). asyncpg does not log a prepared statement's execution, SQLAlchemy's path, so nothing is counted
twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})


@contextmanager
def on_the_wire(engine: AsyncEngine) -> Iterator[tuple[list[str], list[str]]]:
    """(statements, transaction control) sent on `engine`'s connections while the block runs."""
    statements: list[str] = []
    control: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def log(logged: Any) -> None:
        words = logged.query.split(None, 1)
        if words and words[0].upper() in TRANSACTION_CONTROL:
            control.append(logged.query)
        else:
            statements.append(logged.query)

    def watch(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection
        if log not in driver._query_loggers:  # asyncpg keeps them in a set; adding twice is harmless but noisy
            driver.add_query_logger(log)

    def unwatch(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.remove_query_logger(log)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    event.listen(engine.sync_engine, "checkout", watch)
    event.listen(engine.sync_engine, "checkin", unwatch)
    try:
        yield statements, control
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        event.remove(engine.sync_engine, "checkout", watch)
        event.remove(engine.sync_engine, "checkin", unwatch)
