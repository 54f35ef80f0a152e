"""Who is calling: `CurrentCaller` / `CurrentKey` from `Authorization: Bearer <key>`, and `require_admin`.

Authentication and the key's request-rate check run in one short transaction of their own, before the
route touches its session: the rate counter's row lock is never held for a whole request, and a request
never needs two pooled connections at once. Keys are looked up on every request (no cache), so a
revocation, an expiry or a limit change applies to the very next request.

A key in the query string is refused with 400 before anything else, and the value is scrubbed from the
request's scope, so the server's access log (which prints the path with its query) never shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request

from app.auth import service as auth_service
from app.auth.errors import AdminUnauthenticated, KeyInQueryString
from app.auth.service import Principal
from app.core.db import get_database
from app.core.deps import SettingsDep
from app.core.errors import ResourceNotFound, Unauthenticated
from app.limits import service as limits_service
from app.models import ApiKey, Caller

logger = logging.getLogger(__name__)

# Query parameters that carry credentials in common API conventions; none is a parameter of ours.
QUERY_KEY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "access_token", "token"})
REDACTED = "[redacted]"


def refuse_keys_in_query(request: Request) -> None:
    """400 for a credential in the URL; the value is blanked in the scope first, so no log can print it."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True)
    offending = sorted({name for name, _ in pairs if name.lower() in QUERY_KEY_PARAMS})
    if not offending:
        return
    request.scope["query_string"] = urlencode(
        [(name, REDACTED if name.lower() in QUERY_KEY_PARAMS else value) for name, value in pairs]
    ).encode("latin-1")
    logger.warning("refused %s %s: credential in the query string (%s)", request.method, request.url.path, offending)
    raise KeyInQueryString(
        "API keys must not be sent in the URL; use the header 'Authorization: Bearer YOUR_KEY'. "
        "Treat a key that was sent in a URL as leaked and have it revoked.",
        param=offending[0],
    )


def bearer_of(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


async def get_principal(request: Request, settings: SettingsDep) -> Principal:
    refuse_keys_in_query(request)
    presented = bearer_of(request)
    if presented is None:
        raise Unauthenticated(
            "You didn't provide an API key. Use the header 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    async with get_database(request).sessionmaker.begin() as session:
        principal = await auth_service.authenticate(session, presented_key=presented, dev_mode=settings.is_dev)
        await limits_service.admit_request(
            session, api_key=principal.api_key, caller=principal.caller, settings=settings.limits
        )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_caller(principal: CurrentPrincipal) -> Caller:
    """The caller (detached from any session: use its id, not its relationships)."""
    return principal.caller


async def get_current_key(principal: CurrentPrincipal) -> ApiKey:
    return principal.api_key


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]
CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """The operator's key (`VG_ADMIN_API_KEY`). Unset, the admin API does not exist (404, as for any
    unknown path); set, anything but that key in the bearer header is a 401."""
    configured = settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise ResourceNotFound("Not Found")
    refuse_keys_in_query(request)
    presented = bearer_of(request) or ""
    # Digests of both sides: compare_digest then also hides the configured key's length.
    expected = hashlib.sha256(configured.get_secret_value().encode("utf-8")).digest()
    if not hmac.compare_digest(hashlib.sha256(presented.encode("utf-8")).digest(), expected):
        raise AdminUnauthenticated("Incorrect admin API key provided.")


AdminAuth = Depends(require_admin)
