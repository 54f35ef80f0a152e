"""httpx transports for tests: count what the gateway sends upstream, route by host to in-process apps."""

from __future__ import annotations

from collections import Counter

import httpx
from fastapi import FastAPI


class CountingTransport(httpx.AsyncBaseTransport):
    """Forwards to `inner` and counts requests by `METHOD /path` (query string dropped)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[f"{request.method} {request.url.path}"] += 1
        return await self.inner.handle_async_request(request)

    def count(self, method: str, path_prefix: str) -> int:
        return sum(n for key, n in self.calls.items() if key.startswith(f"{method} {path_prefix}"))

    async def aclose(self) -> None:
        await self.inner.aclose()


class ByHost(httpx.AsyncBaseTransport):
    """Routes each request to the in-process app serving its host."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)
