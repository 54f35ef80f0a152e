"""Who is calling: `CurrentCaller` / `CurrentKey` from `Authorization: Bearer <key>`, and `require_admin`.

Authentication and the key's request-rate check run in one short transaction of their own, before the
route touches its session: the rate counter's row lock is never held for a whole request, and a request
never needs two pooled connections at once. Good keys are looked up on every request (never cached), so a
revocation, an expiry or a limit change applies to the very next request. Refused keys are remembered for a
few seconds (app/auth/bad_keys.py), so a flood of one bad key costs no query.

Wrong admin keys are throttled per client address and per process (app/auth/throttle.py), shared with the
console's sign-in: `install` puts both per-process objects on the app.

A key in the query string is refused with 400 before anything else, and the value is scrubbed from the
request's scope, so the server's access log (which prints the path with its query) never shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, FastAPI, Request

from app.auth import keys
from app.auth import service as auth_service
from app.auth.bad_keys import BadKeyCache
from app.auth.errors import AdminUnauthenticated, KeyInQueryString
from app.auth.service import Principal
from app.auth.throttle import AdminKeyThrottle, address_of
from app.core.config import Settings
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
    key_digest = keys.digest(presented)
    refused = bad_keys(request)
    async with refused.lookup(key_digest) as known_bad:
        if known_bad:
            raise Unauthenticated(auth_service.INCORRECT_KEY)  # the very answer the database would have given
        async with get_database(request).sessionmaker.begin() as session:
            try:
                principal = await auth_service.authenticate(session, presented_key=presented, dev_mode=settings.is_dev)
            except Unauthenticated:
                refused.add(key_digest)
                raise
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
    unknown path); set, anything but that key in the bearer header is a 401, and too many wrong keys a 429
    (`admin_throttle`), for the right key too until `Retry-After`."""
    configured = settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise ResourceNotFound("Not Found")
    refuse_keys_in_query(request)
    throttle = admin_throttle(request)
    address = client_address(request)
    throttle.check(address)
    presented = bearer_of(request) or ""
    # Digests of both sides: compare_digest then also hides the configured key's length.
    expected = hashlib.sha256(configured.get_secret_value().encode("utf-8")).digest()
    if not hmac.compare_digest(hashlib.sha256(presented.encode("utf-8")).digest(), expected):
        if presented:  # no key at all is not a guess (a probe, a misconfigured client): 401, not counted
            throttle.failed(address)
        raise AdminUnauthenticated("Incorrect admin API key provided.")
    throttle.succeeded(address)


AdminAuth = Depends(require_admin)


# ----- per-process state ------------------------------------------------------------------------------


def install(app: FastAPI, settings: Settings) -> None:
    """The app's admin-key throttle and bad-key memory: one of each per process (see the module docstring)."""
    app.state.admin_throttle = AdminKeyThrottle(settings.auth)
    app.state.bad_keys = BadKeyCache(
        ttl_seconds=settings.auth.bad_key_cache_seconds, max_entries=settings.auth.bad_key_cache_entries
    )


def admin_throttle(request: Request) -> AdminKeyThrottle:
    throttle: AdminKeyThrottle = request.app.state.admin_throttle
    return throttle


def bad_keys(request: Request) -> BadKeyCache:
    cache: BadKeyCache = request.app.state.bad_keys
    return cache


def client_address(request: Request) -> str:
    """The peer's address as the server saw it (forwarded headers are not trusted: `proxy_headers=False`)."""
    return address_of(request.client.host if request.client else None)


AdminThrottle = Annotated[AdminKeyThrottle, Depends(admin_throttle)]
BadKeys = Annotated[BadKeyCache, Depends(bad_keys)]
