"""The pure ASGI middlewares that answer before any route (the body size limit, the idempotency middleware)
render their errors with `app.core.error_responses.error_response`, the error handlers' own renderer: each of their
refusals is byte for byte what the handler answers for the same error."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware

from app.core.access_log import AccessLog
from app.core.body_limit import BodySizeLimit
from app.core.error_responses import install_error_handlers
from app.core.errors import GatewayError, InvalidRequest, PayloadTooLarge, unexpected_error
from app.core.resources import AppResources, install_resources
from app.idempotency.middleware import IdempotencyMiddleware, _unexpected_error_answer
from app.idempotency.service import IdempotencyService

MAX_BYTES = 10


class BrokenService(IdempotencyService):
    """Claiming a key fails with a bug: the middleware answers the unexpected-error 500 itself."""

    def __init__(self) -> None:
        super().__init__(ttl_seconds=60, stale_after_seconds=60, dev_mode=True)

    async def begin(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")


async def post(app: FastAPI, *, body: bytes = b"{}", headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        return await client.post("/v1/videos", content=body, headers=headers or {})


async def handler_answer(error: Exception) -> httpx.Response:
    """What a route raising `error` is answered with: the installed error handlers, behind the access log
    (which answers unexpected exceptions)."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/videos")
    async def fail() -> None:
        raise error

    app.add_middleware(AccessLog, routes=app.router.routes)
    return await post(app)


def middleware_app(middleware: Middleware) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/videos")
    async def create() -> dict[str, str]:
        return {"id": "video_x"}

    app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    fields: dict[str, Any] = dict.fromkeys(AppResources.__dataclass_fields__)
    install_resources(app, AppResources(**{**fields, "database": SimpleNamespace(sessionmaker=None)}))
    return app


def assert_same_answer(answer: httpx.Response, expected: httpx.Response) -> None:
    assert answer.status_code == expected.status_code
    assert answer.content == expected.content  # the same bytes, not only the same JSON
    assert {name: answer.headers[name] for name in ("content-type", "content-length")} == {
        name: expected.headers[name] for name in ("content-type", "content-length")
    }


async def test_the_body_limit_refuses_as_the_handler_answers_the_same_error() -> None:
    app = middleware_app(Middleware(BodySizeLimit, max_bytes=MAX_BYTES))
    refused = await post(app, body=b"x" * (MAX_BYTES + 1))
    expected = await handler_answer(PayloadTooLarge(f"Request body is larger than {MAX_BYTES} bytes."))
    assert refused.status_code == 413
    assert_same_answer(refused, expected)


async def test_an_unusable_idempotency_key_is_refused_as_the_handler_answers_it() -> None:
    app = middleware_app(Middleware(IdempotencyMiddleware, service=BrokenService(), max_body_bytes=MAX_BYTES))
    refused = await post(app, headers={"idempotency-key": 'a"b', "authorization": "Bearer vg-key"})
    expected = await handler_answer(
        InvalidRequest(
            "Idempotency-Key is not a valid string.", param="Idempotency-Key", code="invalid_idempotency_key"
        )
    )
    assert refused.status_code == 400
    assert_same_answer(refused, expected)


async def test_a_claim_that_fails_unexpectedly_is_the_handlers_500() -> None:
    app = middleware_app(Middleware(IdempotencyMiddleware, service=BrokenService(), max_body_bytes=MAX_BYTES))
    failed = await post(app, headers={"idempotency-key": "k-1", "authorization": "Bearer vg-key"})
    expected = await handler_answer(KeyError("a bug"))  # any unexpected exception of a route
    assert failed.status_code == 500
    assert_same_answer(failed, expected)
    assert_same_answer(failed, await handler_answer(unexpected_error()))


async def test_the_stored_answer_of_a_crashed_route_is_the_handlers_500_not_to_be_retried() -> None:
    stored = _unexpected_error_answer()
    expected = await handler_answer(RuntimeError("the route crashed"))
    assert stored.status == expected.status_code == 500
    assert stored.body == expected.content
    headers = dict(stored.headers)
    assert headers["x-should-retry"] == "false"
    assert headers["content-type"] == expected.headers["content-type"]
    assert headers["content-length"] == expected.headers["content-length"]


async def test_a_gateway_error_raised_by_a_route_keeps_its_headers() -> None:
    """The handler's own answer goes through the same renderer: the class's status and the error's headers."""
    answer = await handler_answer(GatewayError("x", headers={"Retry-After": "5"}))
    assert answer.status_code == 500
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {"error": {"message": "x", "type": "server_error", "param": None, "code": None}}
