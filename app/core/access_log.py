"""One log line per request, without the query string or any header.

Uvicorn's own access log prints the full target, query string included, where a caller may have put a
key by mistake (`?api_key=...`); this line carries only what is safe to keep.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("app.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            logger.info(
                "%s %s %d %.1fms", scope["method"], scope["path"], status, (time.perf_counter() - started) * 1000
            )
