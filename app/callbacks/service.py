"""Callbacks to callers: the hooks the facade and the archive call, and what the callbacks API does.

`on_video_event` only writes outbox rows on the session it is given, so an event is recorded if and only if
the transaction that saw it commits (the worker's fenced transaction, or the facade's); the worker's sender
(`app.callbacks.delivery.deliver_due`) sends them later. Each event goes to the video's `callback_url` and
to the caller's standing endpoints, once per (video, event, URL) however often the hook is called.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive.repository import ArchiveRepository
from app.callbacks.repository import CallbackRepository
from app.core import outbound_urls
from app.core.config import CallbackSettings
from app.core.errors import GatewayError, InvalidRequest, ResourceNotFound
from app.models import CallbackAttempt, CallbackDelivery, CallbackEndpoint, CallbackSecret, Caller, DeliveryState, Video
from app.upstream.ids import as_caller_text

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32


class CallbackEvent(StrEnum):
    ARCHIVED = "video.archived"
    FAILED = "video.failed"
    ARCHIVE_FAILED = "video.archive_failed"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def validate_callback_url(url: str, settings: CallbackSettings, *, param: str = "callback_url") -> None:
    """Refuse (InvalidRequest, 400, saying why) a callback URL outside the operator's allow-list.

    A host name not allow-listed by name is resolved here (once, blocking) to check its addresses against
    the allowed CIDRs; delivery checks again, on the address it connects to.
    """
    try:
        outbound_urls.check_url(url, settings)
    except outbound_urls.DestinationRefused as exc:
        raise InvalidRequest(f"Invalid '{param}': {exc}.", param=param, code="invalid_callback_url") from None


async def on_video_event(
    session: AsyncSession, *, video: Video, event: CallbackEvent, settings: CallbackSettings
) -> None:
    """Record `event` for the video's callback destinations in the outbox, in the caller's transaction."""
    if video.deleted_at is not None:
        return  # the caller deleted it; nobody is waiting to hear about it
    repository = CallbackRepository.from_session(session)
    targets: dict[str, str | None] = {}
    if video.callback_url:
        targets[video.callback_url] = None
    for endpoint in await repository.live_endpoints(video.caller_id):
        targets.setdefault(endpoint.url, endpoint.id)
    if not targets:
        return
    event_id = "evt_" + secrets.token_hex(16)
    payload = json.dumps(
        await _event_body(repository, video=video, event=event, event_id=event_id), separators=(",", ":")
    )
    rows = [
        {
            "webhook_id": "msg_" + secrets.token_hex(16),
            "event_id": event_id,
            "event_type": event.value,
            "caller_id": video.caller_id,
            "video_id": video.id,
            "endpoint_id": endpoint_id,
            "url": url,
            "payload": payload,
        }
        for url, endpoint_id in targets.items()
    ]
    added = await repository.add_deliveries(rows)
    if added:
        logger.info("callback %s for %s queued to %d destination(s)", event.value, video.id, added)


async def _event_body(
    repository: CallbackRepository, *, video: Video, event: CallbackEvent, event_id: str
) -> dict[str, Any]:
    archive = {
        asset.variant: {"state": asset.state, "bytes": asset.bytes, "sha256": asset.sha256}
        for asset in await ArchiveRepository.from_session(repository.session).assets_of(video.id)
    }
    message = as_caller_text(video.error_message, upstream_id=video.upstream_id, video_id=video.id)
    error = {"code": video.error_code, "message": message} if video.error_code else None
    return {
        "id": event_id,
        "object": "event",
        "created_at": int(time.time()),
        "type": event.value,
        "data": {
            "id": video.id,
            "status": video.status,
            "metadata": video.caller_metadata or {},
            "archive": archive,
            "error": error,
        },
    }


# ----- the callbacks API --------------------------------------------------------------------------


async def get_secret(session: AsyncSession, *, caller: Caller) -> CallbackSecret:
    """The caller's signing secret, created on first need."""
    return await CallbackRepository.from_session(session).ensure_secret(caller.id, new_secret=new_secret())


async def rotate_secret(session: AsyncSession, *, caller: Caller, settings: CallbackSettings) -> CallbackSecret:
    """A new secret; the old one keeps signing beside it for `secret_rotation_grace_seconds`."""
    secret = await CallbackRepository.from_session(session).rotate_secret(
        caller.id, new_secret=new_secret(), grace_seconds=settings.secret_rotation_grace_seconds
    )
    logger.info("callback secret of caller %s rotated", caller.id)
    return secret


class TooManyEndpoints(GatewayError):
    """The caller already has as many standing endpoints as allowed; removing one makes room."""

    status_code = 409
    type = "invalid_request_error"
    code = "too_many_callback_endpoints"


async def create_endpoint(
    session: AsyncSession, *, caller: Caller, url: str, settings: CallbackSettings
) -> CallbackEndpoint:
    """Subscribe `url`; subscribing a URL again returns its endpoint. At most `max_endpoints_per_caller`."""
    validate_callback_url(url, settings, param="url")
    endpoint_id = "cbe_" + secrets.token_hex(12)
    limit = settings.max_endpoints_per_caller
    endpoint = await CallbackRepository.from_session(session).add_endpoint_within(
        caller.id, endpoint_id=endpoint_id, url=url, max_endpoints=limit
    )
    if endpoint is None:
        raise TooManyEndpoints(
            f"This caller already has {limit} callback endpoints, the most allowed; remove one "
            "(DELETE /v1/callbacks/endpoints/{id}) before adding another.",
            param="url",
        )
    return endpoint


async def list_endpoints(session: AsyncSession, *, caller: Caller) -> Sequence[CallbackEndpoint]:
    return await CallbackRepository.from_session(session).live_endpoints(caller.id)


async def delete_endpoint(session: AsyncSession, *, caller: Caller, endpoint_id: str) -> None:
    if not await CallbackRepository.from_session(session).delete_endpoint(caller.id, endpoint_id):
        raise ResourceNotFound(
            f"No callback endpoint found with id '{endpoint_id}'.", param="endpoint_id", code="not_found"
        )


@dataclass(frozen=True)
class DeliveryRecord:
    delivery: CallbackDelivery
    attempts: list[CallbackAttempt]


async def list_deliveries(
    session: AsyncSession, *, caller: Caller, limit: int, after: str | None, video_id: str | None
) -> list[DeliveryRecord]:
    """The caller's delivery log, newest first, each delivery with its attempts."""
    repository = CallbackRepository.from_session(session)
    deliveries = await repository.deliveries_of(caller.id, limit=limit, after=after, video_id=video_id)
    by_delivery: dict[int, list[CallbackAttempt]] = {delivery.id: [] for delivery in deliveries}
    for attempt in await repository.attempts_of(list(by_delivery)):
        by_delivery[attempt.delivery_id].append(attempt)
    return [DeliveryRecord(delivery, by_delivery[delivery.id]) for delivery in deliveries]


def can_retry(delivery: CallbackDelivery, *, logged_attempts: int) -> bool:
    """Whether `retry_delivery` would queue `delivery` now, so the console offers the button only then: failed,
    or pending with every attempt it claimed logged (none in flight). The same condition as the update in
    `CallbackRepository.retry_now`; delivered and cancelled deliveries are final."""
    return delivery.state == DeliveryState.FAILED or (
        delivery.state == DeliveryState.PENDING and delivery.attempts == logged_attempts
    )


async def retry_delivery(session: AsyncSession, *, delivery_id: int) -> bool:
    """An operator's retry (the console): the delivery is due now; False when it is final or in flight."""
    return await CallbackRepository.from_session(session).retry_now(delivery_id)
