"""The Gemini simulator's project webhook: signed `video.generated` events with retries.

Google's documented event is `{"type": "video.generated", "data": {"video_uri": "..."}}`, signed the
Standard Webhooks way with the project's `whsec_` secret (headers `webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`). Only successful renders fire it: Google
documents no failure event, so errors and RAI-filtered operations send nothing. `data` deliberately carries
no operation name (Google documents none); the admin log records it beside the delivery for tests.

The OpenAI sender in `app.simulator.delivery` is bound to OpenAI's event shape and user agent, so this is a
small sender of its own with the same retry scheme (each attempt re-signed with a fresh timestamp,
exponential backoff from `webhook_retry_base_seconds`, up to `webhook_max_attempts`), the same `Attempt`
records, and the drop/duplicate/delay knobs of `GeminiFaults`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from app.simulator.delivery import Attempt, DeliveryStatus
from app.simulator.gemini.faults import GeminiFaults

logger = logging.getLogger(__name__)

EVENT_TYPE = "video.generated"
USER_AGENT = "video-gateway-gemini-simulator/1.0"
ATTEMPT_TIMEOUT_SECONDS = 10.0


def build_event(video_uri: str) -> dict[str, Any]:
    return {"type": EVENT_TYPE, "data": {"video_uri": video_uri}}


@dataclass(slots=True)
class GeminiDelivery:
    """One event (and, with the duplicate fault, one of its copies)."""

    webhook_id: str
    operation_name: str
    video_uri: str
    body: str
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "type": EVENT_TYPE,
            "operation_name": self.operation_name,
            "video_uri": self.video_uri,
            "status": self.status,
            "attempts": [attempt.as_json() for attempt in self.attempts],
            "body": self.body,
        }


class GeminiWebhookSender:
    """Applies the webhook faults and delivers `video.generated` with retries on background tasks."""

    def __init__(
        self,
        *,
        secret: str | None,
        max_attempts: int,
        retry_base_seconds: float,
        url: Callable[[], str | None],
        faults: Callable[[], GeminiFaults],
    ) -> None:
        # Built once so a secret that is not valid base64 fails at start-up, not inside a delivery task.
        self._signer = Webhook(secret) if secret is not None else None
        self._max_attempts = max_attempts
        self._retry_base_seconds = retry_base_seconds
        self._url = url
        self._faults = faults
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[GeminiDelivery] = []

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT_SECONDS, follow_redirects=False)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.deliveries.clear()

    def publish_generated(self, operation_name: str, video_uri: str) -> None:
        """Queue one `video.generated` event (called from the lifecycle loop; never blocks)."""
        if self._url() is None:
            return
        faults = self._faults()
        body = json.dumps(build_event(video_uri))
        webhook_id = f"msg_{secrets.token_hex(16)}"
        copies = 2 if self._take_duplicate(faults) else 1
        batch = [GeminiDelivery(webhook_id, operation_name, video_uri, body) for _ in range(copies)]
        self.deliveries.extend(batch)
        if self._take_drop(faults):
            for delivery in batch:
                delivery.status = "dropped"
            return
        for delivery in batch:
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook {webhook_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _take_drop(faults: GeminiFaults) -> bool:
        if faults.webhook_drop_next > 0:
            faults.webhook_drop_next -= 1
            return True
        return faults.webhook_drop_probability > 0 and random.random() < faults.webhook_drop_probability

    @staticmethod
    def _take_duplicate(faults: GeminiFaults) -> bool:
        if faults.webhook_duplicate:
            return True
        return faults.webhook_duplicate_probability > 0 and random.random() < faults.webhook_duplicate_probability

    async def _deliver(self, delivery: GeminiDelivery) -> None:
        delay = self._faults().webhook_delay_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        for number in range(1, self._max_attempts + 1):
            if await self._attempt(delivery, number):
                delivery.status = "delivered"
                return
            if number < self._max_attempts:
                await asyncio.sleep(self._retry_base_seconds * 2 ** (number - 1))
        delivery.status = "failed"
        logger.warning("webhook %s gave up after %d attempts", delivery.webhook_id, self._max_attempts)

    async def _attempt(self, delivery: GeminiDelivery, number: int) -> bool:
        url = self._url()
        assert self._client is not None, "GeminiWebhookSender.start() was not awaited"
        if url is None:
            delivery.attempts.append(Attempt(number, time.time(), None, "webhook_url unset"))
            return False
        now = time.time()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(now)),
        }
        if self._signer is not None:
            signed_at = datetime.fromtimestamp(int(now), tz=UTC)
            headers["webhook-signature"] = self._signer.sign(delivery.webhook_id, signed_at, delivery.body)
        try:
            response = await self._client.post(url, content=delivery.body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(number, now, None, f"{type(exc).__name__}: {exc}"))
            return False
        delivery.attempts.append(Attempt(number, now, response.status_code, None))
        return 200 <= response.status_code < 300
