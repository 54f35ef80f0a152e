"""`declared_length`: the one reading of Content-Length, by the body guard, the idempotency middleware and the
webhook receiver (each with its own limit)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from app.core.body_limit import MALFORMED, PAST_ANY_LIMIT, BodySizeLimit, declared_length


def headers(*values: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), *((b"content-length", value) for value in values)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), None),
        ((b"0",), 0),
        ((b"123",), 123),
        ((b"000000000000012",), 12),  # leading zeros are the same number, however many
        ((b"123", b"123"), 123),  # a repeat of one value counts once
        ((b"123", b"124"), MALFORMED),
        ((b"",), MALFORMED),
        ((b"-1",), MALFORMED),
        ((b"+1",), MALFORMED),
        ((b"1e3",), MALFORMED),
        ((b"12 ",), MALFORMED),
        (("\u00b2".encode(),), MALFORMED),  # a superscript two is a digit to str.isdigit, not here
        ((b"9" * 19,), PAST_ANY_LIMIT),
        ((b"9" * 5000,), PAST_ANY_LIMIT),  # no int() of 5,000 digits
        ((b"0" * 5000 + b"7",), 7),
    ],
)
def test_declared_length(values: tuple[bytes, ...], expected: object) -> None:
    assert declared_length(headers(*values)) == expected


def test_past_any_limit_is_past_every_limit_of_ours() -> None:
    assert PAST_ANY_LIMIT > 2**50


def app_with_limit(max_bytes: int) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
    return app


@pytest.mark.parametrize(
    ("declared", "status"),
    [("10", 200), ("0000000000000000010", 200), ("11", 413), ("9" * 400, 413)],
)
async def test_the_body_guard_refuses_a_declared_length_over_its_limit(declared: str, status: int) -> None:
    transport = httpx.ASGITransport(app=app_with_limit(10))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        request = client.build_request("POST", "/echo", content=b"x" * 10)
        request.headers["content-length"] = declared
        response = await client.send(request)
    assert response.status_code == status, response.text
