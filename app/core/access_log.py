"""Per request: a request id, one access line without the query string or any header, and a latency sample.

Uvicorn's own access log prints the full target, query string included, where a caller may have put a
key by mistake (`?api_key=...`); this line carries only what is safe to keep.

The request id is the caller's `X-Request-ID` when it is short and safe, else a new one; it is bound to
every log line of the request (structlog contextvars), returned in the response's `X-Request-ID`, and
stored with what the request queues for the worker (`app.core.logging.stamp_transaction`).

The latency histogram is labelled by route template (`/v1/videos/{video_id}`), never the raw path.

It is also where an unexpected exception ends: logged once, with its traceback and the request id, and
answered as OpenAI's 500 (`app.core.error_responses.unexpected_error_response`). It is not re-raised: Starlette's
outermost middleware would log it again and hand it on to the server, which logs it a third time.
"""

from __future__ import annotations

import logging
import time

import structlog
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.error_responses import unexpected_error_response
from app.core.errors import log_unexpected
from app.core.logging import REQUEST_ID_HEADER, accept_request_id

logger = logging.getLogger("app.access")

_HEADER_NAME = REQUEST_ID_HEADER.encode("latin-1")


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    """The template of the route that served the request (set by the router on the shared scope), else the
    first route that would match it (an answer replayed by a middleware never reached the router)."""
    route = scope.get("route")
    if route is None:
        for candidate in routes:
            if candidate.matches(scope)[0] is Match.FULL:
                route = candidate
                break
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED_ROUTE


class AccessLog:
    """Outermost of our middlewares, so that every other one logs under the request id."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute] | None = None) -> None:
        self.app = app
        self.routes = routes if routes is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        incoming = [value for name, value in scope["headers"] if name == _HEADER_NAME]
        request_id = accept_request_id(incoming[0].decode("latin-1") if len(incoming) == 1 else None)

        async def record_status(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [(name, value) for name, value in message.get("headers", []) if name != _HEADER_NAME]
                message = {**message, "headers": [*headers, (_HEADER_NAME, request_id.encode("latin-1"))]}
            await send(message)

        # Reset on exit: under an in-process transport the app runs in the caller's own context.
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, record_status)
            except Exception as exc:
                if response_started:
                    # Too late for a 500. Returning with the body unfinished makes the server close the
                    # connection (the client sees it cut short) with a one-line note, not a second traceback.
                    log_unexpected(exc, what="unhandled error after the response started")
                else:
                    await unexpected_error_response(exc)(scope, receive, record_status)
            finally:
                seconds = time.perf_counter() - started
                route = route_template(scope, self.routes)
                metrics.http_request(method=scope["method"], route=route, status=status, seconds=seconds)
                logger.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    seconds * 1000,
                    extra={"method": scope["method"], "route": route, "status": status, "duration_ms": seconds * 1000},
                )
