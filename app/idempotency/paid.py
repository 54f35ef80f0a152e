"""The routes that start a paid upstream call, marked where they are defined: `@paid_upstream_call`.

Idempotency-Key applies to exactly these (the middleware matches their paths before routing, with
`PAID_PATHS` in app/idempotency/middleware.py); tests/unit/test_app_wiring.py checks the two agree on every
route of the app. A new route that renders upstream gets the mark, and the middleware's pattern its path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

MARK: Final = "starts_paid_upstream_call"


def paid_upstream_call(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint (under its `@router.post(...)`) as starting a paid upstream call."""
    setattr(endpoint, MARK, True)
    return endpoint


def is_paid(endpoint: Callable[..., Any] | None) -> bool:
    """Whether a route's endpoint carries the mark."""
    return getattr(endpoint, MARK, False) is True
