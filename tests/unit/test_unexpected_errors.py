"""An unexpected exception (a RecursionError, a bug) is logged once, with its traceback, and answered as a 500 in
OpenAI's shape; it is not handed on to the server, which would log it a second time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Message

from app.core.access_log import AccessLog
from app.core.error_responses import install_error_handlers


def app_that_fails() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/recursion")
    async def recursion() -> None:
        def down(levels: int) -> int:
            return down(levels + 1)

        down(0)

    @app.get("/bug")
    async def bug() -> None:
        raise KeyError("a bug")

    @app.get("/midstream")
    async def midstream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise RuntimeError("the source broke")

        return StreamingResponse(chunks())

    app.add_middleware(AccessLog, routes=app.router.routes)
    return app


async def get(path: str) -> httpx.Response:
    # raise_app_exceptions=True (httpx's default): an exception the app hands on to the server fails the test.
    transport = httpx.ASGITransport(app=app_that_fails())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        return await client.get(path)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info is not None]


@pytest.mark.parametrize(("path", "kind"), [("/recursion", RecursionError), ("/bug", KeyError)])
async def test_an_unexpected_error_is_a_500_in_openai_shape_logged_once(
    caplog: pytest.LogCaptureFixture, path: str, kind: type[BaseException]
) -> None:
    with caplog.at_level(logging.INFO):
        response = await get(path)
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "The server had an error processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert response.headers["x-request-id"]  # the 500 carries the request id like every other answer
    logged = tracebacks(caplog)
    assert len(logged) == 1, [record.getMessage() for record in logged]
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is kind
    assert any(record.name == "app.access" and " 500 " in record.getMessage() for record in caplog.records)


async def test_a_failure_after_the_answer_started_is_logged_once_and_not_handed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Driven as the server would: httpx's in-process transport cannot represent a body cut short.
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/midstream",
        "raw_path": b"/midstream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway.test")],
        "client": ("127.0.0.1", 1),
        "server": ("gateway.test", 80),
    }
    sent: list[Message] = []
    body_read = False

    async def receive() -> Message:
        nonlocal body_read
        if body_read:
            await asyncio.Event().wait()  # the client stays connected
        body_read = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    app = app_that_fails()
    with caplog.at_level(logging.INFO):
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)  # returns: nothing is handed on to the server
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200 and sent[1]["more_body"] is True  # the body never finished
    logged = tracebacks(caplog)
    assert len(logged) == 1
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError
