"""The HTTP side of app/core/errors.py: every failure answered in OpenAI's error shape.

The handlers installed by `install_error_handlers` render `GatewayError`s, FastAPI's validation errors, unknown
routes and any unexpected exception in the same shape, so the stock `openai` SDK maps every answer to its
exception class. `error_response` is the one rendering of a `GatewayError`: the handlers return it, and the pure
ASGI middlewares that answer before any route (the body size limit, the idempotency middleware) send it as the
ASGI app it is, so their refusals are the same bytes as a route's.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import (
    GatewayError,
    database_unavailable,
    database_unavailable_error,
    error_body,
    log_unexpected,
    unexpected_error,
)

logger = logging.getLogger(__name__)


def error_response(error: GatewayError) -> JSONResponse:
    """`error` as every answer of the gateway renders it: OpenAI's shape, the class's status, its headers.

    Pure ASGI code answers with it as an ASGI app (`await error_response(error)(scope, receive, send)`)."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def unexpected_error_response(exc: Exception) -> JSONResponse:
    """Logs `exc` (once) and returns OpenAI's 500; what `AccessLog` sends for anything that escapes a route."""
    log_unexpected(exc)
    return error_response(unexpected_error())


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure in OpenAI's error shape; nothing escapes as a bare 500 page."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        param = ".".join(location) or None
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}" if param else "Invalid request"
        return JSONResponse(
            error_body(message, type="invalid_request_error", param=param, code="invalid_value"),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            error_body(str(exc.detail), type="invalid_request_error", code=code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def _database_error(_: Request, exc: Exception) -> JSONResponse:
        # A killed connection or a failover mid-request: nothing was committed, so say "retry" (503 with
        # Retry-After, which the SDK retries), not 500. Anything else from the driver is a bug: a 500.
        if not database_unavailable(exc):
            if isinstance(exc, OSError):
                raise exc  # not the database's: handled as before, where unexpected exceptions end (AccessLog)
            return unexpected_error_response(exc)
        logger.warning("database unavailable: %s", type(exc).__name__)
        return error_response(database_unavailable_error())

    # OSError: asyncpg's own socket errors (a refused connection) reach the route unwrapped; asyncpg's own errors
    # too, from the statements run alone on the driver (`Database.fetch_alone`).
    for database_error in (DBAPIError, DisconnectionError, PoolTimeoutError, OSError, asyncpg.PostgresError):
        app.add_exception_handler(database_error, _database_error)

    # A fallback only: in the gateway, `AccessLog` (app/core/access_log.py) answers unexpected exceptions
    # before they reach Starlette's outermost middleware, which runs this handler and then re-raises to the
    # server (so the same traceback would be logged twice).
    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)
