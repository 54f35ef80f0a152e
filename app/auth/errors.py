"""Errors of the auth domain beyond the core ones (401 lives in app.core.errors)."""

from __future__ import annotations

from app.core.errors import GatewayError, InvalidRequest


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
