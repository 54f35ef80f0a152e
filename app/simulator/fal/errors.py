"""fal's error envelope for the fal simulator: `{"detail": "text" | [{"loc", "msg", "type", ...}]}`.

fal answers refusals with a `detail` that is either a sentence or, for input the model rejects (validation,
content policy), a list of typed error objects; `X-Fal-Retryable` says whether trying again can help and
`X-Fal-Error-Type` names infrastructure errors. `FalError` carries one such answer; the app renders it with a
single handler, FastAPI's own validation and routing errors included, so a client never sees another shape.
"""

from __future__ import annotations

from typing import Any

CONTENT_POLICY = "content_policy_violation"
CONTENT_POLICY_MESSAGE = "The content was flagged by a content checker."


class FalError(Exception):
    """An HTTP error answered in fal's envelope."""

    def __init__(self, status_code: int, detail: str | list[dict[str, Any]], *, headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


def input_error(loc: list[str | int], msg: str, error_type: str, **extra: Any) -> dict[str, Any]:
    """One typed error object of a 422 `detail` list."""
    return {"loc": ["body", *loc], "msg": msg, "type": error_type, **extra}


def unprocessable(errors: list[dict[str, Any]]) -> FalError:
    return FalError(422, errors, headers={"x-fal-retryable": "false"})


def invalid_field(name: str, msg: str, error_type: str = "value_error") -> FalError:
    return unprocessable([input_error([name], msg, error_type)])


def content_policy(prompt: str) -> FalError:
    """What a result read answers for a request a content checker refused."""
    return unprocessable(
        [
            input_error(
                ["prompt"],
                CONTENT_POLICY_MESSAGE,
                CONTENT_POLICY,
                url="https://docs.fal.ai/errors#content_policy_violation",
                input=prompt[:200],
            )
        ]
    )


def unauthorized(message: str = "Missing or invalid authorization: send 'Authorization: Key <your key>'.") -> FalError:
    return FalError(401, message)


def not_found(message: str) -> FalError:
    return FalError(404, message)


def bad_request(message: str) -> FalError:
    return FalError(400, message)


def rate_limited() -> FalError:
    return FalError(429, "Rate limit exceeded; slow down.", headers={"retry-after": "1", "x-fal-retryable": "true"})


SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("internal_server_error", "Internal server error."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "The service is temporarily unavailable."),
    504: ("request_timeout", "The request timed out."),
}


def server_error(status: int) -> FalError:
    error_type, message = SERVER_ERRORS[status]
    return FalError(status, message, headers={"x-fal-error-type": error_type, "x-fal-retryable": "true"})
