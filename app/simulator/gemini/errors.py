"""Google's error envelope for the Gemini simulator: one error type and the canonical statuses it uses.

Google APIs answer every refusal as `{"error": {"code": <HTTP status>, "message": "...", "status":
"<google.rpc.Code name>"}}`. `GoogleError` carries one such answer; the app renders it with a single handler,
including FastAPI's own validation and routing errors, so a client never sees another shape.
"""

from __future__ import annotations

from typing import Any


class GoogleError(Exception):
    """An HTTP error answered in Google's envelope."""

    def __init__(self, code: int, message: str, status: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid_argument(message: str) -> GoogleError:
    return GoogleError(400, message, "INVALID_ARGUMENT")


def not_found(message: str = "Requested entity was not found.") -> GoogleError:
    return GoogleError(404, message, "NOT_FOUND")


def unauthenticated() -> GoogleError:
    return GoogleError(
        401,
        "Request is missing required authentication credential. Expected an API key in the "
        "x-goog-api-key header or the key query parameter.",
        "UNAUTHENTICATED",
    )


def permission_denied(message: str = "API key not valid. Please pass a valid API key.") -> GoogleError:
    return GoogleError(403, message, "PERMISSION_DENIED")


def resource_exhausted() -> GoogleError:
    return GoogleError(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED")


SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}


def server_error(code: int) -> GoogleError:
    status, message = SERVER_ERRORS[code]
    return GoogleError(code, message, status)
