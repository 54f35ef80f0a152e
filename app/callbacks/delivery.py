"""The sender: claims due outbox rows, checks and pins each destination, signs, POSTs, records the attempt.

`deliver_due(context)` is called by the archive worker on every tick. A claim is a short transaction;
sending happens outside any transaction, concurrently for the claimed batch, each attempt bounded by
`timeout_seconds`; each outcome is written in its own short transaction. Failed attempts (an error
answer, a redirect, a timeout, a refused destination) are retried on the schedule; after `max_attempts`
the delivery is `failed`. Signatures are made at attempt time (Standard Webhooks: `webhook-id`,
`webhook-timestamp`, `webhook-signature`) under the caller's secret, plus the previous one during a
rotation's grace period. Neither secrets nor signatures are ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime
from typing import Protocol

import httpx
from standardwebhooks import Webhook

from app.callbacks.client import CallbackClient, SendResult
from app.callbacks.repository import CallbackRepository, ClaimedDelivery
from app.callbacks.service import new_secret
from app.core import metrics, outbound_urls, retry
from app.core.config import CallbackSettings, Settings
from app.core.db import Database
from app.models import AttemptOutcome, DeliveryState

logger = logging.getLogger(__name__)

# Beyond the attempt's own time budget, before another worker may take a claimed row over.
LEASE_MARGIN_SECONDS = 30.0


class DeliveryContext(Protocol):
    """What the sender needs from the worker (`app.archive.jobs.JobContext` fits)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def database(self) -> Database: ...


def callback_retry_delay(attempt: int, settings: CallbackSettings, *, rng: random.Random | None = None) -> float | None:
    """Seconds before the attempt after `attempt` (1-based), or None when `attempt` was the last."""
    if attempt >= settings.max_attempts:
        return None
    return retry.fixed_schedule(
        attempt, settings.retry_schedule_seconds, jitter_ratio=settings.retry_jitter_ratio, rng=rng
    )


def signature_headers(
    webhook_id: str, payload: str, secrets: list[str], *, now: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers; one `v1,` signature per secret (current first)."""
    timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
    signatures = " ".join(Webhook(secret).sign(webhook_id, timestamp, payload) for secret in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }


async def deliver_due(context: DeliveryContext, *, transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Send what is due (one batch); returns how many attempts were made. `transport` is for tests."""
    settings = context.settings.callbacks
    lease = settings.timeout_seconds + LEASE_MARGIN_SECONDS
    async with context.database.transaction() as session:
        repository = CallbackRepository.from_session(session)
        claimed = await repository.claim_due(limit=settings.batch_size, lease_seconds=lease)
        if not claimed:
            return 0
        callers = {delivery.caller_id for delivery in claimed}
        for caller_id in sorted(callers):
            await repository.ensure_secret(caller_id, new_secret=new_secret())
        secrets = await repository.signing_secrets(callers)
    async with CallbackClient(timeout_seconds=settings.timeout_seconds, transport=transport) as client:
        await asyncio.gather(
            *(_attempt(context, client, delivery, secrets[delivery.caller_id], settings) for delivery in claimed)
        )
    return len(claimed)


async def _attempt(
    context: DeliveryContext,
    client: CallbackClient,
    delivery: ClaimedDelivery,
    secrets: list[str],
    settings: CallbackSettings,
) -> None:
    address: str | None = None
    try:
        target = await outbound_urls.pin(delivery.url, settings)
    except outbound_urls.DestinationRefused as exc:
        result = SendResult(AttemptOutcome.REFUSED, error=str(exc))
    else:
        address = target.address
        headers = signature_headers(delivery.webhook_id, delivery.payload, secrets)
        result = await client.post(target, body=delivery.payload.encode("utf-8"), headers=headers)
    await _record(context, delivery, result, address=address, settings=settings)


async def _record(
    context: DeliveryContext,
    delivery: ClaimedDelivery,
    result: SendResult,
    *,
    address: str | None,
    settings: CallbackSettings,
) -> None:
    retry_in = None if result.delivered else callback_retry_delay(delivery.attempts, settings)
    if result.delivered:
        state = DeliveryState.DELIVERED
    elif retry_in is None:
        state = DeliveryState.FAILED
    else:
        state = DeliveryState.PENDING
    async with context.database.transaction() as session:
        recorded = await CallbackRepository.from_session(session).record_attempt(
            delivery,
            outcome=result.outcome.value,
            status_code=result.status_code,
            error=result.error,
            address=address,
            duration_ms=result.duration_ms,
            state=state,
            retry_in_seconds=retry_in,
        )
    metrics.callback_attempt(outcome=result.outcome.value, state=state.value if recorded else "lost")
    where = _host_of(delivery.url)
    if not recorded:
        logger.warning(
            "callback %s to %s: attempt %d outcome lost (taken over)", delivery.webhook_id, where, delivery.attempts
        )
    elif result.delivered:
        logger.info(
            "callback %s (%s) to %s: delivered at attempt %d (%s)",
            delivery.webhook_id,
            delivery.event_type,
            where,
            delivery.attempts,
            result.status_code,
        )
    else:
        log = logger.error if state is DeliveryState.FAILED else logger.warning
        log(
            "callback %s (%s) to %s: attempt %d %s: %s; %s",
            delivery.webhook_id,
            delivery.event_type,
            where,
            delivery.attempts,
            result.outcome.value,
            result.error,
            "giving up" if retry_in is None else f"retrying in {retry_in:.1f} s",
        )


def _host_of(url: str) -> str:
    """For logs: the host only (a path or query string may carry the receiver's token)."""
    try:
        return outbound_urls.parse(url).netloc
    except outbound_urls.DestinationRefused:
        return "(invalid URL)"


__all__ = ["DeliveryContext", "callback_retry_delay", "deliver_due", "signature_headers"]
