"""A database that is away (killed connection, failover, full pool) answers 503 + Retry-After, never a bare 500.

Found by the soak: while `pg_terminate_backend` cut the API's connections, creates answered 500. A bad
statement is still a bug and stays a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.core.errors import install_error_handlers


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


async def test_a_bad_statement_is_still_a_500() -> None:
    response = await post(app_raising(lambda: IntegrityError("INSERT", {}, DriverError("23505"))))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "retry-after" not in response.headers
