"""Gateway errors: OpenAI's `{"error": {message, type, param, code}}`, as exceptions and bodies.

Services raise subclasses of `GatewayError` (status, type and code live on the class); app/core/error_responses.py
renders them as HTTP answers. The two are apart so that the worker, which raises and logs these errors but
answers no HTTP request, does not import FastAPI (about 15 MiB of its resident memory).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import asyncpg
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger(__name__)

# What a client is told of anything unexpected: nothing of what went wrong (that is in the log).
UNEXPECTED_ERROR_MESSAGE: Final = "The server had an error processing your request."


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class GatewayError(Exception):
    """Base of every error a client may see; the class says status, type and code."""

    status_code: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


class InvalidRequest(GatewayError):
    status_code = 400
    type = "invalid_request_error"


class Unauthenticated(GatewayError):
    status_code = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ResourceNotFound(GatewayError):
    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(GatewayError):
    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class UnprocessableInput(GatewayError):
    status_code = 422
    type = "invalid_request_error"
    code = "unprocessable_input"


class RateLimited(GatewayError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """Upstream answered with a server error or not at all; the request may or may not have taken effect."""

    status_code = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


# SQLSTATE classes of a database that is away rather than of a bad statement: 08 connection exception,
# 57 operator intervention (pg_terminate_backend, shutdown, failover, statement_timeout), 53 insufficient resources.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "57", "53"})
DATABASE_RETRY_AFTER_SECONDS = 5
# Where the database's own socket errors come from: asyncpg lets them through (refused, unknown host, timed
# out, reset) and SQLAlchemy passes them on unwrapped.
DATABASE_PACKAGES = ("asyncpg", "sqlalchemy")


def database_unavailable(exc: BaseException) -> bool:
    """The one definition of "the database is away": a lost, refused or timed-out connection, a failover, an
    administrator's intervention, a full pool. Nothing was committed and a retry may succeed, so the API answers
    503 with Retry-After (the CLI says "cannot reach Postgres"). A bad statement, or any other error, is not:
    that is a bug, a 500."""
    if isinstance(exc, DisconnectionError | PoolTimeoutError | OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return exc.connection_invalidated or (isinstance(sqlstate, str) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES)
    if isinstance(exc, asyncpg.PostgresError):  # unwrapped: a statement run alone on the driver (decision 012)
        sqlstate = getattr(exc, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, OSError):  # TimeoutError and ConnectionError included; only the driver's own count
        return _raised_in(exc, DATABASE_PACKAGES)
    return False


def _raised_in(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether `exc`, or an exception it was raised from or while handling, passed through these packages' code."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        traceback = link.__traceback__
        while traceback is not None:
            module = str(traceback.tb_frame.f_globals.get("__name__", ""))
            if any(module == package or module.startswith(package + ".") for package in packages):
                return True
            traceback = traceback.tb_next
        link = link.__cause__ or link.__context__
    return False


def database_unavailable_error() -> ServiceUnavailable:
    """What a client is told when `database_unavailable`: 503, `service_unavailable`, Retry-After."""
    return ServiceUnavailable(
        "The database is unavailable; retry later.", retry_after_seconds=DATABASE_RETRY_AFTER_SECONDS
    )


def log_unexpected(exc: BaseException, *, what: str = "unhandled error") -> None:
    """The one log line of an unexpected exception, traceback included (the formatter redacts it)."""
    logger.exception(what, exc_info=exc)


def unexpected_error(*, headers: Mapping[str, str] | None = None) -> GatewayError:
    """OpenAI's 500 for an unexpected exception (`server_error`, no code), rendered by
    `app.core.error_responses.error_response`."""
    return GatewayError(UNEXPECTED_ERROR_MESSAGE, headers=headers)


class WebhookMalformed(GatewayError):
    """A webhook delivery we cannot even check: missing or unparseable headers, a body that is not an event."""

    status_code = 400
    type = "invalid_request_error"
    code = "invalid_webhook"


class WebhookSignatureInvalid(GatewayError):
    """A well-formed webhook delivery that is not authentic: no signature matches, or the timestamp is stale."""

    status_code = 401
    type = "invalid_request_error"
    code = "invalid_webhook_signature"


class ServiceUnavailable(GatewayError):
    """A dependency of ours (the database) failed; nothing was recorded, so the client should retry."""

    status_code = 503
    type = "server_error"
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after_seconds: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


class IdempotencyKeyInUse(GatewayError):
    """A request with this `Idempotency-Key` is still running (or never finished); its answer is not known yet."""

    status_code = 409
    type = "invalid_request_error"
    code = "idempotency_key_in_use"


class IdempotencyKeyReused(GatewayError):
    """This `Idempotency-Key` was already used for a different request (another body, path or method)."""

    status_code = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"
