"""ModelArk's error envelope for the Seedance simulator: one error type and the codes the simulator answers.

Ark answers a refused request as `{"error": {"code": "<CamelCase code>", "message": "..."}}` with the HTTP
status beside it. `ArkError` carries one such answer; the app renders it with a single handler, FastAPI's own
validation and routing errors included, so a client never sees another shape. (The TOS file host answers in
its own XML shape: see `app.simulator.seedance.files`.)
"""

from __future__ import annotations

from typing import Any


class ArkError(Exception):
    """An HTTP error answered in ModelArk's envelope."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def invalid_parameter(message: str) -> ArkError:
    return ArkError(400, "InvalidParameter", message)


def bad_value(name: str, reason: str) -> ArkError:
    """A 400 naming the request field, in the form Ark's messages take."""
    return invalid_parameter(f"The parameter `{name}` specified in the request is not valid: {reason}")


def unauthenticated() -> ArkError:
    return ArkError(401, "AuthenticationError", "The API key in the request is missing or invalid.")


def task_not_found(task_id: str) -> ArkError:
    return ArkError(404, "ResourceNotFound", f"The specified task {task_id[:100]} is not found.")


def model_not_found(model: str) -> ArkError:
    return ArkError(
        404,
        "InvalidEndpointOrModel.NotFound",
        f"The model or endpoint {model[:100]} does not exist or you do not have access to it.",
    )


def model_not_open(model: str) -> ArkError:
    return ArkError(
        404,
        "ModelNotOpen",
        f"Your account has not activated the model {model[:100]}. Please activate the model service in the "
        "Ark console.",
    )


def task_running(task_id: str) -> ArkError:
    # Ark cancels only queued tasks and deletes only finished ones; a running task is refused.
    return ArkError(
        400,
        "OperationDenied.InvalidState",
        f"The task {task_id} is running: only a queued task can be cancelled and only a finished task deleted.",
    )


def rate_limited(code: str) -> ArkError:
    return ArkError(
        429,
        code,
        "The request has exceeded the rate limit of this account for the model. Please retry later.",
    )


SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("InternalServiceError", "The service encountered an unexpected internal error."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry later."),
}


def server_error(status: int) -> ArkError:
    code, message = SERVER_ERRORS[status]
    return ArkError(status, code, message)
