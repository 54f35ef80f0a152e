"""Errors of the auth domain beyond the core ones (401 lives in app.core.errors)."""

from __future__ import annotations

from app.core.errors import GatewayError, InvalidRequest, RateLimited


class Conflict(GatewayError):
    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class KeyInQueryString(InvalidRequest):
    """An API key sent as `?api_key=` (or similar): refused, since URLs end up in logs and proxies."""

    code = "api_key_in_query"


class AdminUnauthenticated(GatewayError):
    status_code = 401
    type = "invalid_request_error"
    code = "invalid_admin_key"


class AdminKeyThrottled(RateLimited):
    """Too many wrong admin keys from this address (or from everywhere): nothing is checked until `Retry-After`,
    not even the right key, so guessing gets no faster by sending more."""

    code = "too_many_failed_attempts"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"Too many failed admin key attempts. Please try again in {retry_after_seconds}s.",
            headers={"Retry-After": str(retry_after_seconds)},
        )
        self.retry_after_seconds = retry_after_seconds
