"""A database that is away (killed or refused connection, failover, full pool) answers 503 + Retry-After, never a
bare 500.

Found by the soak: while `pg_terminate_backend` cut the API's connections, creates answered 500. A bad
statement is still a bug and stays a 500. `database_unavailable` is the one definition, used by the error
handlers, the webhook receiver, the idempotency middleware and the operator CLI.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.error_responses import install_error_handlers
from app.core.errors import database_unavailable


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def dbapi_error(sqlstate: str, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, DriverError(sqlstate), connection_invalidated=invalidated)


AWAY: dict[str, Callable[[], Exception]] = {
    "terminated by an administrator (57P01)": lambda: dbapi_error("57P01"),
    "connection failure (08006)": lambda: dbapi_error("08006"),
    "too many connections (53300)": lambda: dbapi_error("53300"),
    "connection invalidated": lambda: dbapi_error("XX000", invalidated=True),
    "operational error": lambda: OperationalError("SELECT 1", {}, DriverError("XX000")),
    "pool exhausted": lambda: PoolTimeoutError("QueuePool limit reached"),
    # Unwrapped, from a statement run alone on the driver (Database.fetch_alone, decision 012).
    "asyncpg: terminated by an administrator": lambda: asyncpg.AdminShutdownError("terminating connection"),
    "asyncpg: too many connections": lambda: asyncpg.TooManyConnectionsError("too many clients"),
    "asyncpg: connection does not exist": lambda: asyncpg.ConnectionDoesNotExistError("connection was closed"),
}


def app_raising(make: Callable[[], Exception], *, in_commit: bool = False) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    async def session() -> AsyncIterator[None]:
        yield
        if in_commit:  # as SessionDep's commit after the route
            raise make()

    @app.post("/work", dependencies=[Depends(session, scope="function")])  # as SessionDep
    async def work() -> dict[str, str]:
        if not in_commit:
            raise make()
        return {"status": "done"}

    return app


async def post(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        return await client.post("/work")


@pytest.mark.parametrize("in_commit", [False, True], ids=["in the route", "in the commit"])
@pytest.mark.parametrize("failure", list(AWAY), ids=list(AWAY))
async def test_a_database_that_is_away_answers_503_with_retry_after(failure: str, in_commit: bool) -> None:
    response = await post(app_raising(AWAY[failure], in_commit=in_commit))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"


@pytest.mark.parametrize(
    "make",
    [lambda: IntegrityError("INSERT", {}, DriverError("23505")), lambda: asyncpg.UniqueViolationError("duplicate")],
    ids=["through SQLAlchemy", "from the driver"],
)
async def test_a_bad_statement_is_still_a_500(make: Callable[[], Exception]) -> None:
    response = await post(app_raising(make))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "retry-after" not in response.headers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


async def refused_connection() -> BaseException:
    """What a refused connection raises through SQLAlchemy: asyncpg's own `ConnectionRefusedError`, unwrapped."""
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("a closed port accepted a connection")


async def test_a_refused_connection_is_away() -> None:
    refused = await refused_connection()
    assert isinstance(refused, OSError)
    assert database_unavailable(refused)


async def test_a_refused_connection_in_a_route_answers_503() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/work")
    async def work() -> dict[str, str]:
        raise await refused_connection()

    response = await post(app)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, DriverError("23505")),
        ProgrammingError("SELECT nope", {}, DriverError("42703")),
        OSError("not the database's: a file"),
        ConnectionResetError("not the database's: raised by our own code"),
        TimeoutError("not the database's"),
        RuntimeError("a bug"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.DivisionByZeroError("division by zero"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_is_not_the_database_being_away(error: Exception) -> None:
    assert not database_unavailable(error)


@pytest.mark.parametrize("failure", list(AWAY), ids=list(AWAY))
def test_what_is_the_database_being_away(failure: str) -> None:
    assert database_unavailable(AWAY[failure]())


async def test_an_os_error_of_our_own_code_is_still_a_500() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/work")
    async def work() -> dict[str, str]:
        raise ConnectionResetError("not the database's")

    response = await post(app)
    assert response.status_code == 500
    assert "retry-after" not in response.headers
