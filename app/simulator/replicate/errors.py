"""Replicate's error answers for its simulator: problem details, and the bare throttling body.

Replicate refuses requests with RFC 7807-style problem details, `{"title": ..., "detail": ..., "status": <HTTP
status>}` (an input it cannot take adds `invalid_fields`, one entry per field); a throttled request gets only
`{"detail": "Request was throttled. Your rate limit resets in ~30s."}` and a `Retry-After`. `ReplicateError`
carries one such answer; the app renders it with a single handler, FastAPI's own validation and routing errors
included, so a client never sees another shape.
"""

from __future__ import annotations

from typing import Any


class ReplicateError(Exception):
    """An HTTP error answered in Replicate's shape."""

    def __init__(
        self,
        status: int,
        detail: str,
        title: str | None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        if self.title is None:  # the throttling answer: its detail alone
            return {"detail": self.detail}
        return {"title": self.title, "detail": self.detail, "status": self.status, **self.extra}


def bad_request(detail: str) -> ReplicateError:
    return ReplicateError(400, detail, "Bad request")


def unauthenticated() -> ReplicateError:
    return ReplicateError(401, "You did not pass a valid authentication token", "Unauthenticated")


def not_found(detail: str = "The requested resource could not be found.") -> ReplicateError:
    return ReplicateError(404, detail, "Not found")


def invalid_input(problems: list[tuple[str, str, str]]) -> ReplicateError:
    """422 for an `input` the model's schema refuses; each problem is (type, field, description)."""
    detail = "".join(f"- {where}: {description}\n" for _kind, where, description in problems)
    fields = [{"type": kind, "field": where, "description": description} for kind, where, description in problems]
    return ReplicateError(422, detail, "Input validation failed", extra={"invalid_fields": fields})


def throttled(retry_after_seconds: int) -> ReplicateError:
    return ReplicateError(
        429,
        f"Request was throttled. Your rate limit resets in ~{retry_after_seconds}s.",
        None,
        headers={"retry-after": str(retry_after_seconds)},
    )


SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("Internal Server Error", "Something went wrong on our end. Please try again."),
    502: ("Bad Gateway", "The server received an invalid response from an upstream server."),
    503: ("Service Unavailable", "The service is temporarily unavailable. Please try again later."),
}


def server_error(status: int) -> ReplicateError:
    title, detail = SERVER_ERRORS[status]
    return ReplicateError(status, detail, title)
