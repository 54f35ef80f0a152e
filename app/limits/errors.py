"""The 429s of app/limits, in OpenAI's shapes (`rate_limit_error` / `insufficient_quota`)."""

from __future__ import annotations

from app.core.errors import GatewayError, RateLimited


class RequestRateExceeded(RateLimited):
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


class ConcurrentRendersExceeded(RateLimited):
    code = "concurrent_renders_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


class QuotaExceeded(GatewayError):
    """The spend budget of the period would be exceeded. Retrying before the period ends cannot help, so the
    answer carries `x-should-retry: false` (honoured by the stock SDK) and a Retry-After to the period's end."""

    status_code = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds), "x-should-retry": "false"})
