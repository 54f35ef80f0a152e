"""`Idempotency-Key` on the paid POSTs (create, remix, edits, extensions, characters), as a pure ASGI middleware.

A middleware rather than route dependencies, because it must see the request body before the route parses
it (to fingerprint it, then hand it on unchanged) and the whole answer after the route, error handlers
included (to store it before the client sees it). Only `POST /v1/videos`, `POST /v1/videos/{id}/remix`,
`POST /v1/videos/edits`, `POST /v1/videos/extensions` and `POST /v1/videos/characters` with the header are
touched; everything else passes straight through.

For a request it handles: parse the key (400 if unusable), authenticate the caller (a request that does
not authenticate passes through and gets the route's 401), buffer the body (bounded by the body limit:
anything larger passes through to the 413 of `BodySizeLimit`), fingerprint it, then claim the key or
answer from the record (replay, 409, 422). The route runs with the buffered body replayed; its answer
(status, headers, body) is captured, stored or released (`service.keeps_answer`), and then sent. The answer
is durable before the client sees any of it, so a client whose connection dropped gets it on its retry.
"""

from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.keys import parse_bearer
from app.core.body_limit import MALFORMED, declared_length
from app.core.config import Settings
from app.core.error_responses import error_response
from app.core.errors import GatewayError, InvalidRequest, ServiceUnavailable, database_unavailable, unexpected_error
from app.core.resources import resources_of
from app.idempotency.fingerprint import InvalidKey, parse_key, request_fingerprint
from app.idempotency.repository import StoredAnswer
from app.idempotency.service import Claim, IdempotencyService, Replay

logger = logging.getLogger(__name__)

HEADER = b"idempotency-key"
# The paths of the routes marked `@paid_upstream_call` (app/idempotency/paid.py), matched before routing.
PAID_PATHS = re.compile(r"^/v1/videos(/[^/]+/remix|/edits|/extensions|/characters)?$")
# Set on every replayed answer (as Stripe does), so a client can tell a repeat from a first answer.
REPLAYED_HEADER = "idempotent-replayed"
# Never stored, never replayed.
UNSTORED_HEADERS = frozenset({"set-cookie", REPLAYED_HEADER})
# A claim in flight for longer than this belongs to a request that died: at least a minute, and more than
# the longest a create can take (connect attempts with their pauses, then one full upstream timeout).
MIN_STALE_AFTER_SECONDS = 60.0


def stale_after_seconds(settings: Settings) -> float:
    upstream = settings.upstream
    longest = upstream.timeout_seconds + upstream.create_attempts * (
        upstream.connect_timeout_seconds + upstream.retry_max_seconds
    )
    return max(MIN_STALE_AFTER_SECONDS, longest)


def handles(method: str, path: str) -> bool:
    """Whether a request is one of the paid POSTs this middleware handles (with the header)."""
    return method == "POST" and PAID_PATHS.match(path) is not None


def idempotency_service(settings: Settings) -> IdempotencyService:
    """The `service` argument of `IdempotencyMiddleware` (the app factory lists the middleware itself)."""
    return IdempotencyService(
        ttl_seconds=settings.idempotency.ttl_seconds,
        stale_after_seconds=stale_after_seconds(settings),
        dev_mode=settings.is_dev,
    )


class IdempotencyMiddleware:
    """Idempotency-Key handling on the paid POST routes; the `Database` is the one the app's lifespan built
    (read per request from the app serving it, `scope["app"]`)."""

    def __init__(self, app: ASGIApp, *, service: IdempotencyService, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not handles(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        values = [value for name, value in headers if name == HEADER]
        if not values:
            await self.app(scope, receive, send)
            return
        try:
            key = parse_key(values)
        except InvalidKey as exc:
            refusal = InvalidRequest(str(exc), param="Idempotency-Key", code="invalid_idempotency_key")
            await error_response(refusal)(scope, receive, send)
            return
        presented = parse_bearer(_header(headers, b"authorization"))
        if presented is None:
            await self.app(scope, receive, send)  # the route answers 401
            return

        body, complete = await self._read_body(scope, receive)
        if not complete:
            await self.app(scope, _replay(body, receive, chunked=True), send)  # too large (413) or gone
            return
        fingerprint = request_fingerprint(
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            content_type=_header(headers, b"content-type"),
            body=b"".join(body),
        )
        database = resources_of(scope["app"]).database
        try:
            outcome = await self.service.begin(
                database.sessionmaker, presented_key=presented, key=key, fingerprint=fingerprint
            )
        except GatewayError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except Exception as exc:
            logger.exception("idempotency: could not claim a key")
            # Nothing was done either way: a database that is away is a 503 (retry), anything else a 500.
            failure: GatewayError
            if database_unavailable(exc):
                failure = ServiceUnavailable("The request could not be recorded; nothing was done.")
            else:
                failure = unexpected_error()
            await error_response(failure)(scope, receive, send)
            return
        if outcome is None:
            await self.app(scope, _replay(body, receive), send)  # not authenticated: the route answers 401
            return
        if isinstance(outcome, Replay):
            await _send_answer(send, outcome.answer, replayed=True)
            return
        answer = await self._run(scope, _replay(body, receive), outcome)
        try:
            if not await self.service.finish(database.sessionmaker, outcome, answer):
                logger.warning("idempotency: the claim on key %r expired before its answer was stored", key)
        except Exception:
            # The answer is sent anyway; the record stays in flight and repeats get 409 (never a second render).
            logger.exception("idempotency: could not store the answer of key %r", key)
        await _send_answer(send, answer, replayed=False)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[list[bytes], bool]:
        """The body's chunks, and whether they are the whole body within the limit."""
        declared = declared_length(scope["headers"])
        if declared is MALFORMED or (isinstance(declared, int) and declared > self.max_body_bytes):
            return [], False  # passed on unhandled: over the limit, BodySizeLimit answers 413
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return chunks, False  # the client went away mid-body
            chunk: bytes = message.get("body", b"")
            chunks.append(chunk)
            seen += len(chunk)
            if seen > self.max_body_bytes:
                return chunks, False
            if not message.get("more_body", False):
                return chunks, True

    async def _run(self, scope: Scope, receive: Receive, claim: Claim) -> StoredAnswer:
        """Run the route and capture its whole answer; an exception becomes the 500 the error handler sends."""
        status: int | None = None
        response_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        finished = False

        async def capture(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_headers.extend(
                    (name.decode("latin-1"), value.decode("latin-1")) for name, value in message.get("headers", [])
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                finished = not message.get("more_body", False)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            logger.exception("unhandled error (Idempotency-Key %r)", claim.key)
            if not finished:
                return _unexpected_error_answer()
        if status is None or not finished:
            return _unexpected_error_answer()
        kept = [(name, value) for name, value in response_headers if name.lower() not in UNSTORED_HEADERS]
        return StoredAnswer(status=status, headers=kept, body=b"".join(chunks))


def _unexpected_error_answer() -> StoredAnswer:
    # What the app's own handler of unexpected errors says, plus `x-should-retry: false`: the failure may have
    # come after the render was started, and the stored answer is what every repeat gets.
    answer = error_response(unexpected_error(headers={"x-should-retry": "false"}))
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.raw_headers]
    return StoredAnswer(status=answer.status_code, headers=headers, body=bytes(answer.body))


def _replay(chunks: list[bytes], receive: Receive, *, chunked: bool = False) -> Receive:
    """A `receive` that hands the buffered body on (whole, or chunk by chunk as it came), then the rest."""
    if chunked:
        pending: list[Message] = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    else:
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_answer(send: Send, answer: StoredAnswer, *, replayed: bool) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    if replayed:
        headers.append((REPLAYED_HEADER.encode(), b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
