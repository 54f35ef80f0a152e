"""The simulator's one error type and its rendering in OpenAI's error shape.

Every refusal the simulator makes (validation, auth, not found, fault bursts) is a `SimulatorError`, and
one handler renders it as `{"error": {"message", "type", "param", "code"}}` like the real API does.
"""

from __future__ import annotations

from typing import Any


class SimulatorError(Exception):
    """An HTTP error answered in OpenAI's shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, *, param: str | None = None, code: str | None = "invalid_value") -> SimulatorError:
    """A 400 for a request the contract refuses."""
    return SimulatorError(400, message, param=param, code=code)


def not_found(message: str, *, param: str | None = None) -> SimulatorError:
    return SimulatorError(404, message, param=param, code=None)
