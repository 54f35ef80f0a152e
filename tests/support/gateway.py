"""The in-process gateway as a client sees it: an httpx client over ASGI with a caller's key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI

# The `new_caller_key` fixture: makes a caller with a fresh key and returns the plain key.
NewCaller = Callable[[], Awaitable[str]]


def gateway_client(app: FastAPI, key: str | None) -> httpx.AsyncClient:
    """A client of `app` over ASGI, authenticated with `key` (anonymous when None)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", headers=headers)
