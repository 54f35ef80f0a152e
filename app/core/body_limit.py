"""Request body sizes: `declared_length`, the one reading of Content-Length, and `BodySizeLimit`, a pure ASGI
guard that refuses request bodies over the configured size with 413, streaming or not.

Each reader of Content-Length keeps its own limit (this guard, the idempotency middleware's buffer, the
webhook receiver's cap); none trusts the header alone: the bytes that actually arrive are counted as well.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.error_responses import error_response
from app.core.errors import PayloadTooLarge

CONTENT_LENGTH: Final = b"content-length"
# Past any limit of ours; a longer number is read as this much (int() of a 5,000-digit header raises).
MAX_DIGITS: Final = 18
PAST_ANY_LIMIT: Final = 10**MAX_DIGITS


class Malformed(enum.Enum):
    """A Content-Length that is not one decimal number: empty, a sign, a letter, or two different values."""

    LENGTH = "malformed"


MALFORMED: Final = Malformed.LENGTH


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | Malformed | None:
    """The body length a request declares (ASGI headers: lower-case names), None when it declares none, or
    `MALFORMED`. Repeats of one value count once; more than `MAX_DIGITS` digits read as `PAST_ANY_LIMIT`."""
    values = {value for name, value in headers if name == CONTENT_LENGTH}
    if not values:
        return None
    if len(values) > 1:
        return MALFORMED
    (value,) = values
    if not value.isdigit():  # bytes: ASCII digits only
        return MALFORMED
    digits = value.lstrip(b"0")
    return PAST_ANY_LIMIT if len(digits) > MAX_DIGITS else int(digits or b"0")


class BodySizeLimit:
    """Refuses a request body over `max_bytes` with 413 `request_too_large`: at once when Content-Length says
    so, else as soon as the bytes read pass it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope["headers"])
        # A malformed length is not refused here: the bytes that arrive are counted below all the same.
        if isinstance(declared, int) and declared > self.max_bytes:
            # Answered here, before any route: rendered as the error handler renders the same error.
            await error_response(self._too_large())(scope, receive, send)
            return
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the route's body read; the error handler renders it as 413.
                    raise self._too_large()
            return message

        await self.app(scope, bounded_receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body is larger than {self.max_bytes} bytes.")
