"""Who is calling: the caller and key from `Authorization: Bearer <key>`, and `require_admin`.

Routes take them through `CurrentCaller`, `CurrentKey` and `AdminAuth` (app/deps.py, with every alias).
`authenticate_request` runs before the route touches its session, on pooled connections of its own that it
gives back before the route runs (a request never holds two at once); a key it remembers needs no session. A key
is looked up in Postgres at most once a second per process: good keys are remembered for at most 1 s and refused
ones for longer (app/auth/key_cache.py), so a revocation, an expiry, a disabled caller or a new limit applies on
every replica within 1 s. Then it runs the check it is handed (app/deps.py hands it the key's request-rate check
of app/limits), one statement run alone on the driver (decision 012), so the rate counter is exact across
replicas and its row is locked only for that statement. Auth takes the check as an argument so that it imports
nothing of app/limits (limits depends on auth: callers and keys are auth's).

Wrong admin keys are throttled per client address and per process (app/auth/throttle.py), shared with the
console's sign-in: the throttle and the key memory are per-process objects of the app's `AppResources`.

A key in the query string is refused with 400 before anything else, and the value is scrubbed from the
request's scope, so the server's access log (which prints the path with its query) never shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from fastapi import Request

from app.auth import keys
from app.auth import service as auth_service
from app.auth.errors import AdminUnauthenticated, KeyInQueryString
from app.auth.key_cache import KeyCache
from app.auth.service import Principal
from app.auth.throttle import address_of
from app.core.db import Database, run_without_transaction
from app.core.errors import ResourceNotFound, Unauthenticated
from app.core.resources import resources

logger = logging.getLogger(__name__)

# Query parameters that carry credentials in common API conventions; none is a parameter of ours.
QUERY_KEY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "access_token", "token"})
REDACTED = "[redacted]"

# What else must pass before a request is let in (the key's request rate), given the database to check it in.
Admission = Callable[[Database, Principal], Awaitable[None]]


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


async def authenticate_request(request: Request, *, admit: Admission) -> Principal:
    """The request's caller and key (from memory, or looked up), then `admit` (its refusal is raised)."""
    refuse_keys_in_query(request)
    app = resources(request)
    settings = app.settings
    presented = keys.parse_bearer(request.headers.get("authorization"))
    if presented is None:
        raise Unauthenticated(
            "You didn't provide an API key. Use the header 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    key_digest = keys.digest(presented)
    memory = app.key_cache
    async with memory.lookup(key_digest) as recalled:
        if recalled.refused:
            raise Unauthenticated(auth_service.INCORRECT_KEY)  # the very answer the database would have given
        principal = recalled.principal
        if principal is None:
            principal = await _look_up(app.database, memory, key_digest, presented=presented, dev_mode=settings.is_dev)
    # The admission is one statement (the key's rate counter, counted in Postgres on every request), run alone
    # on the driver: a remembered key's request opens no session at all.
    await admit(app.database, principal)
    request.state.principal = principal
    return principal


async def _look_up(
    database: Database, memory: KeyCache, key_digest: bytes, *, presented: str, dev_mode: bool
) -> Principal:
    """The key's caller from Postgres, remembered either way (good for at most 1 s, refused for longer)."""
    async with database.sessionmaker() as session:
        await run_without_transaction(session)  # one read: no BEGIN, no COMMIT
        try:
            principal = await auth_service.authenticate(session, presented_key=presented, dev_mode=dev_mode)
        except Unauthenticated:
            memory.add(key_digest)
            raise
    memory.remember(key_digest, principal)
    return principal


async def require_admin(request: Request) -> None:
    """The operator's key (`VG_ADMIN_API_KEY`). Unset, the admin API does not exist (404, as for any
    unknown path); set, anything but that key in the bearer header is a 401, and too many wrong keys a 429
    (app/auth/throttle.py), for the right key too until `Retry-After`."""
    app = resources(request)
    if not keys.admin_key_of(app.settings):
        raise ResourceNotFound("Not Found")
    refuse_keys_in_query(request)
    throttle = app.admin_throttle
    address = client_address(request)
    throttle.check(address)
    presented = keys.parse_bearer(request.headers.get("authorization")) or ""
    if not keys.admin_key_matches(presented, app.settings):
        if presented:  # no key at all is not a guess (a probe, a misconfigured client): 401, not counted
            throttle.failed(address)
        raise AdminUnauthenticated("Incorrect admin API key provided.")
    throttle.succeeded(address)


def client_address(request: Request) -> str:
    """The peer's address as the server saw it (forwarded headers are not trusted: `proxy_headers=False`)."""
    return address_of(request.client.host if request.client else None)
