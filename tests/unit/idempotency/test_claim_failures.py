"""A key that cannot be claimed: nothing was done, and `database_unavailable` says whether to say "retry" (503)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.core.resources import AppResources, install_resources
from app.idempotency.middleware import IdempotencyMiddleware
from app.idempotency.service import IdempotencyService


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


class FailingService(IdempotencyService):
    def __init__(self, failure: Exception) -> None:
        super().__init__(ttl_seconds=60, stale_after_seconds=60, dev_mode=True)
        self.failure = failure

    async def begin(self, *args: Any, **kwargs: Any) -> Any:
        raise self.failure


def gateway(failure: Exception) -> FastAPI:
    app = FastAPI()
    routed: list[str] = []

    @app.post("/v1/videos")
    async def create() -> dict[str, str]:
        routed.append("create")
        return {"id": "video_x"}

    app.add_middleware(IdempotencyMiddleware, service=FailingService(failure), max_body_bytes=1024)
    # Only the database's session factory is read, and handed to the (failing) service.
    fields: dict[str, Any] = dict.fromkeys(AppResources.__dataclass_fields__)
    install_resources(app, AppResources(**{**fields, "database": SimpleNamespace(sessionmaker=None)}))
    app.state.routed = routed
    return app


async def create(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        return await client.post(
            "/v1/videos",
            json={"prompt": "p"},
            headers={"authorization": "Bearer vg-key", "idempotency-key": "k-1"},
        )


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (OperationalError("INSERT", {}, DriverError("57P01")), 503),
        (ProgrammingError("INSERT", {}, DriverError("42703")), 500),
        (RuntimeError("a bug"), 500),
    ],
    ids=["database away", "bad statement", "bug"],
)
async def test_a_claim_that_fails_runs_nothing(failure: Exception, status: int) -> None:
    app = gateway(failure)
    response = await create(app)
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == "server_error"
    assert ("retry-after" in response.headers) is (status == 503)
    assert app.state.routed == []
