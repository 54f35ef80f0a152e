"""Gateways with custom limits and an admin key (the `limited_gateway` fixture builds them), and the requests
and error checks the limits tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from app.auth.key_cache import MAX_GOOD_KEY_SECONDS
from tests.support.gateway import gateway_client
from tests.support.transports import CountingTransport

ADMIN_KEY = "vg-admin-test-key-0123456789"


@dataclass(frozen=True)
class Gateway:
    app: FastAPI
    upstream: CountingTransport

    def client(self, key: str | None) -> httpx.AsyncClient:
        return gateway_client(self.app, key)

    @property
    def creates(self) -> int:
        """Render requests that reached upstream (creates and remixes)."""
        return self.upstream.count("POST", "/v1/videos")


# `async with limited_gateway(budget_usd_per_period=1.2, admin=True) as gateway:`
GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


async def create_video(client: httpx.AsyncClient, prompt: str = "a paper boat", **fields: str) -> httpx.Response:
    """A create as the SDK sends it (multipart, one text part per field); the response, whatever its status."""
    return await client.post(
        "/v1/videos", files={"prompt": (None, prompt), **{k: (None, v) for k, v in fields.items()}}
    )


def assert_error(response: httpx.Response, status: int, code: str, type_: str | None = None) -> dict[str, Any]:
    """The response is an error in OpenAI's shape with this status and code (and type); returns its `error`."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    if type_ is not None:
        assert error["type"] == type_, error
    return error


async def answers_within_a_second(client: httpx.AsyncClient, status: int, path: str = "/v1/videos") -> httpx.Response:
    """`client`'s key or its limits, changed behind the gateway's back (the CLI, another replica, SQL), take
    effect within the 1 s a good key may be remembered (app/auth/key_cache.py): `path` answers `status` by then
    (polled); that answer is returned."""
    changed_at = time.monotonic()
    while (response := await client.get(path)).status_code != status:
        assert time.monotonic() - changed_at < MAX_GOOD_KEY_SECONDS + 0.25, f"not {status} after 1 s: {response.text}"
        await asyncio.sleep(0.02)
    return response


async def refused_within_a_second(client: httpx.AsyncClient, path: str = "/v1/videos") -> None:
    """`client`'s key, revoked or expired behind the gateway's back, is refused within 1 s, and stays refused."""
    await answers_within_a_second(client, 401, path)
    assert_error(await client.get(path), 401, "invalid_api_key")
