"""The simulator in process for tests: over ASGITransport, or on a real uvicorn socket.

Also a tiny webhook receiver (a raw ASGI app on uvicorn) that records what it gets and answers with a
scripted sequence of statuses, so delivery, signing and retries are tested over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from app.core.config import SimulatorSettings
from app.simulator import create_simulator_app, simulator_running

API_KEY = "sim-test-key"
WEBHOOK_SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
AUTH = {"Authorization": f"Bearer {API_KEY}"}

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def fast_settings(**overrides: Any) -> SimulatorSettings:
    """Timing small enough that a whole create → completed round trip takes well under a second."""
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "queue_seconds": 0,
        "render_seconds": 0.2,
        "fps": 4,
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 3,
    }
    values.update(overrides)
    return SimulatorSettings(**values)


@contextlib.asynccontextmanager
async def asgi_simulator(settings: SimulatorSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_simulator_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        simulator_running(app),
        httpx.AsyncClient(transport=transport, base_url="http://sim.test", headers=AUTH) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def served(app: ASGIApp | FastAPI) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port (lifespan included); yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", ws="none", lifespan="auto")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def served_simulator(settings: SimulatorSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        served(create_simulator_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=AUTH) as client,
    ):
        yield client


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records webhook POSTs; answers each with the next scripted status (200 once the script runs out)."""

    statuses: list[int] = field(default_factory=list)
    received: list[ReceivedWebhook] = field(default_factory=list)
    url: str = ""

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        self.received.append(ReceivedWebhook(headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedWebhook]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} webhooks, got {len(self.received)}")
            await asyncio.sleep(0.02)
        return self.received


async def wait_for_status(
    client: httpx.AsyncClient, video_id: str, statuses: tuple[str, ...] = ("completed", "failed"), timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/v1/videos/{video_id}")
        assert response.status_code == 200, response.text
        video: dict[str, Any] = response.json()
        if video["status"] in statuses:
            return video
        if time.monotonic() > deadline:
            raise AssertionError(f"video stuck in {video['status']}")
        await asyncio.sleep(0.05)


async def create_video(client: httpx.AsyncClient, **fields: str) -> dict[str, Any]:
    """Create the way the openai SDK does: multipart with one text part per field."""
    data = {"prompt": "A calico cat playing a piano on stage", **fields}
    response = await client.post("/v1/videos", files={name: (None, value) for name, value in data.items()})
    assert response.status_code == 200, response.text
    video: dict[str, Any] = response.json()
    return video


# `async with asgi_sim(**settings) as client` (the `asgi_sim` and `real_sim` fixtures)
SimulatorFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]
