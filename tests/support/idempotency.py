"""Helpers for Idempotency-Key tests: SDK-shaped multipart bodies, upstream transports that stall or fail, and
the records as the database holds them (the extra gateways come from the `own_gateway` fixture)."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from PIL import Image
from sqlalchemy import select

from app.core.db import Database
from app.models import IdempotencyRecord
from tests.support.transports import CountingTransport

PROMPT_FIELDS = {"prompt": "a paper boat on a pond", "seconds": "4", "size": "1280x720"}


def multipart(
    fields: dict[str, str], *, boundary: str | None = None, image: bytes | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a multipart create as the stock SDK (httpx) encodes it; each call draws a new
    random boundary unless one is given, exactly like an SDK retry."""
    files: dict[str, tuple[str | None, str | bytes, str | None]] = {
        name: (None, value, None) for name, value in fields.items()
    }
    if image is not None:
        files["input_reference"] = ("reference.png", image, "image/png")
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"} if boundary else None
    request = httpx.Request("POST", "http://gateway.test/v1/videos", files=files, headers=headers)
    return {"content-type": request.headers["content-type"]}, request.read()


def png(size: tuple[int, int] = (1280, 720), color: tuple[int, int, int] = (20, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def new_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def post_multipart(
    client: httpx.AsyncClient,
    key: str | None,
    fields: dict[str, str] = PROMPT_FIELDS,
    *,
    boundary: str | None = None,
    image: bytes | None = None,
) -> httpx.Response:
    headers, body = multipart(fields, boundary=boundary, image=image)
    if key is not None:
        headers["idempotency-key"] = key
    return await client.post("/v1/videos", content=body, headers=headers)


def uploads(upstream: CountingTransport) -> int:
    """Paid upstream calls so far: creates and remixes."""
    return upstream.count("POST", "/v1/videos")


class ScriptedUpstream(httpx.AsyncBaseTransport):
    """Forwards to `inner`, but paid POSTs first wait `delay` seconds, or fail as `outcome` says."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, delay: float = 0.0, outcome: int | None = None) -> None:
        self.inner = inner
        self.delay = delay
        self.outcome = outcome
        self.paid = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.paid += 1
            await asyncio.sleep(self.delay)
            if self.outcome is not None:
                return httpx.Response(self.outcome, json={"error": {"message": f"scripted {self.outcome}"}})
        return await self.inner.handle_async_request(request)


class BrokenUpstream(httpx.AsyncBaseTransport):
    """Every paid POST raises an error no layer expects: the route fails with an unhandled exception."""

    def __init__(self) -> None:
        self.paid = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paid += 1
        raise RuntimeError("the gateway crashed after sending the render")


# `async with own_gateway(upstream, ttl_seconds=..., **api_settings) as client` (the `own_gateway` fixture)
GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


async def records_with_key(database: Database, key: str) -> list[IdempotencyRecord]:
    async with database.sessionmaker() as session:
        return list((await session.execute(select(IdempotencyRecord).where(IdempotencyRecord.key == key))).scalars())
