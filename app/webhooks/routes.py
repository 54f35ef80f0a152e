"""`POST /webhooks/openai` (path configurable): check the delivery, record it through the service, answer.

Refusals, all before any database work: 415 (not JSON), 413 (over the body cap, before any HMAC),
400 (malformed headers or body), 401 (stale or unmatched signature). A database that is away
(`database_unavailable`, app/core/errors.py) answers 503 with `Retry-After`, so the sender retries; a bad
statement is a 500, as everywhere. A 2xx is sent only once the delivery is durable (the commit, or the one
autocommitted statement of decision 009).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable
from typing import Final

from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from app.core import metrics
from app.core.body_limit import declared_length
from app.core.config import DEFAULT_PROFILE, Settings, UpstreamSettings
from app.core.errors import (
    GatewayError,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    WebhookMalformed,
    WebhookSignatureInvalid,
    database_unavailable,
)
from app.core.resources import resources
from app.upstream.reference import PARAM as REFERENCE_PARAM
from app.upstream.reference import SubmissionReferences
from app.webhooks import service as webhook_service
from app.webhooks.kinds import webhook_kind
from app.webhooks.schemas import DeliveredEvent, WebhookAck
from app.webhooks.verify import TIMESTAMP_HEADER, Clock

RETRY_AFTER_SECONDS: Final = 5


async def recorded(profile: str, receiving: Awaitable[webhook_service.Receipt]) -> Response:
    """The receiver's answer once `receiving` has made the delivery durable (counted then); a database that is away
    is this receiver's 503, counted as a rejected delivery, so that the sender retries."""
    try:
        receipt = await receiving
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        metrics.webhook_delivery(profile=profile, outcome="rejected", reason="database_unavailable")
        raise ServiceUnavailable(
            "The webhook could not be recorded; retry later.", retry_after_seconds=RETRY_AFTER_SECONDS
        ) from exc
    metrics.webhook_delivery(profile=profile, outcome="duplicate" if receipt.outcome is None else receipt.outcome.value)
    return Response(ACK_DUPLICATE if receipt.duplicate else ACK_RECORDED, media_type="application/json")


# `WebhookAck`'s two bodies, encoded once: the answer to every delivery is one of them.
ACK_RECORDED: Final = WebhookAck(duplicate=False).model_dump_json().encode()
ACK_DUPLICATE: Final = WebhookAck(duplicate=True).model_dump_json().encode()


def rejection_reason(error: GatewayError) -> str:
    """The metric's reason code for a refused delivery: what an operator would look at first."""
    if isinstance(error, WebhookSignatureInvalid):
        # A clock problem (either side) or a secret problem (rotation, wrong secret, forgery).
        # Each scheme names its own timestamp header (Standard Webhooks', fal's `x-fal-webhook-timestamp`).
        stale = error.param is not None and error.param.lower().endswith(TIMESTAMP_HEADER)
        return "timestamp_out_of_window" if stale else "signature_mismatch"
    if isinstance(error, WebhookMalformed):
        return "malformed"
    if isinstance(error, PayloadTooLarge):
        return "body_too_large"
    if isinstance(error, UnsupportedMediaType):
        return "not_json"
    return error.code or "other"


def require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("Webhook deliveries must be sent as application/json.")


async def read_capped(request: Request, *, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit`, whatever Content-Length says (or not)."""
    declared = declared_length(request.headers.raw)
    if isinstance(declared, int) and declared > limit:
        raise PayloadTooLarge(f"Webhook body is larger than {limit} bytes.")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"Webhook body is larger than {limit} bytes.")
    except ClientDisconnect:
        raise WebhookMalformed("The webhook body was cut off.") from None
    return bytes(body)


REFUSALS: Final[dict[int | str, dict[str, object]]] = {
    error.status_code: {"description": description}
    for error, description in (
        (WebhookMalformed, "Missing or malformed webhook headers, or a body that is not an event"),
        (WebhookSignatureInvalid, "No signature matches, or the timestamp is outside ±300 s"),
        (PayloadTooLarge, "Body over the webhook body cap"),
        (UnsupportedMediaType, "Content-Type is not application/json"),
        (ServiceUnavailable, "The database is unavailable; retry after Retry-After"),
    )
}


# The body is read raw (the signature covers its bytes), so FastAPI cannot infer its schema; document it.
OPENAPI_EXTRA: Final[dict[str, object]] = {
    "parameters": [
        {"name": header, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
        for header, text in (
            ("webhook-id", "Delivery id (`wh_…`); a redelivery keeps it"),
            ("webhook-timestamp", "Unix seconds, whole; within ±300 s of our clock"),
            ("webhook-signature", "Space-separated `v1,<base64 HMAC-SHA256>` entries"),
        )
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {
                        "id": {"type": "string", "description": "Event id (`evt_…`)"},
                        "object": {"type": "string", "enum": ["event"]},
                        "created_at": {"type": "integer"},
                        "type": {"type": "string", "examples": ["video.completed", "video.failed"]},
                        "data": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": {"type": "string", "description": "Upstream video id"}},
                        },
                    },
                }
            }
        },
    },
}


def build_router(
    settings: Settings,
    *,
    profile: str = DEFAULT_PROFILE,
    verify_with: list[str] | None = None,
    path: str | None = None,
    kind: str = "openai",
    upstream: UpstreamSettings | None = None,
    clock: Clock | None = None,
) -> APIRouter:
    """The receiver for one upstream profile: by default the main upstream at `settings.webhooks.path` with
    `settings.webhooks` secrets; other profiles pass their own. Served with and without a trailing slash
    (a redirect is a failure to the sender). Raises ValueError when the secrets are unusable. The profile's
    `kind` picks, once, how a delivery is verified and read (app/webhooks/kinds.py); `upstream` is the
    profile's settings, which some kinds' verifiers read (fal's key set URL). `clock` is for tests."""
    receiver_kind = webhook_kind(kind)
    parse_event, video_events = receiver_kind.parse, receiver_kind.video_events
    profile_settings = upstream or settings.upstream
    verifier = receiver_kind.verifier(
        profile_settings,
        settings.webhooks.secret_list() if verify_with is None else verify_with,
        clock or time.time,
    )
    max_body_bytes = settings.webhooks.max_body_bytes
    references = SubmissionReferences(profile_settings.api_key)

    async def verified_event(request: Request) -> DeliveredEvent:
        try:
            require_json(request)
            body = await read_capped(request, limit=max_body_bytes)
            # Starlette's Headers.items() keeps repeated names, so the verifier can refuse them.
            delivery = await verifier.check(body, request.headers)
            event = parse_event(delivery)
        except GatewayError as error:
            metrics.webhook_delivery(profile=profile, outcome="rejected", reason=rejection_reason(error))
            raise
        if request.scope.get("query_string") and (reference := request.query_params.get(REFERENCE_PARAM)):
            # Only after the delivery checked out; a reference that is not ours is ignored, not refused.
            event = dataclasses.replace(event, referenced_video_id=references.video_id_of(reference))
        return event

    async def receive_webhook(request: Request) -> Response:
        # Called here, not as FastAPI dependencies: the hottest route of the API spends nothing on solving them.
        event = await verified_event(request)
        object_id = event.object_id
        app = resources(request)
        receiving = webhook_service.receive(
            app.database,
            event=event,
            wake=app.wake_workers,
            worker=settings.worker,
            profile=profile,
            video_events=video_events,
            upstream_ids=None if object_id is None else receiver_kind.upstream_ids(object_id, profile_settings),
        )
        return await recorded(profile, receiving)

    router = APIRouter(tags=["webhooks"])
    path = (path or settings.webhooks.path).rstrip("/") or "/"
    router.add_api_route(
        path,
        receive_webhook,
        methods=["POST"],
        response_model=WebhookAck,
        summary="Receive a signed upstream event (video.completed / video.failed)",
        responses=REFUSALS,
        openapi_extra=OPENAPI_EXTRA,
    )
    if path != "/":
        router.add_api_route(
            path + "/", receive_webhook, methods=["POST"], response_model=WebhookAck, include_in_schema=False
        )
    return router
