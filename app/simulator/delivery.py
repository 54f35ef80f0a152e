"""Signed webhook delivery: the simulator's side of OpenAI's `video.completed` / `video.failed` events.

Each event becomes one `Delivery` with its own `webhook-id` (`wh_…`, distinct from the body's `evt_…` id and
kept across retries, as the Standard Webhooks spec requires). Every attempt re-signs the exact body bytes
with a fresh `webhook-timestamp`, because receivers reject timestamps older than five minutes and retries
can span longer than that. Non-2xx answers and connection errors are retried with exponential backoff up to
`webhook_max_attempts`. The webhook fault knobs (drop, duplicate, delay, reorder) are applied here, and
every delivery is recorded so tests can assert what was sent.
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
from typing import Any, Literal

import httpx
from standardwebhooks import Webhook

from app.simulator.faults import Faults

logger = logging.getLogger(__name__)

USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
ATTEMPT_TIMEOUT_SECONDS = 10.0
EventType = Literal["video.completed", "video.failed"]
DeliveryStatus = Literal["pending", "held", "delivered", "failed", "dropped"]


@dataclass(slots=True)
class Attempt:
    number: int
    at: float
    status_code: int | None
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "at": self.at, "status_code": self.status_code, "error": self.error}


@dataclass(slots=True)
class Delivery:
    """One webhook message (and, with the duplicate fault, one of its copies)."""

    webhook_id: str
    event: dict[str, Any]
    body: str
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    held_since: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "event_id": self.event["id"],
            "type": self.event["type"],
            "video_id": self.event["data"]["id"],
            "status": self.status,
            "attempts": [attempt.as_json() for attempt in self.attempts],
            "body": self.body,
        }


def build_event(event_type: EventType, video_id: str, created_at: int) -> dict[str, Any]:
    """The event payload, as OpenAI sends it: only the video id in `data`."""
    return {
        "id": f"evt_{secrets.token_hex(16)}",
        "object": "event",
        "created_at": created_at,
        "type": event_type,
        "data": {"id": video_id},
    }


def signed_headers(signer: Webhook | None, webhook_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The headers of one attempt; without a signer the message goes unsigned (a misconfigured upstream)."""
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
    }
    if signer is not None:
        headers["webhook-signature"] = signer.sign(webhook_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
    return headers


class WebhookSender:
    """Queues events, applies the webhook faults and delivers with retries on background tasks."""

    def __init__(
        self,
        *,
        secret: str | None,
        max_attempts: int,
        retry_base_seconds: float,
        url: Callable[[], str | None],
        faults: Callable[[], Faults],
    ) -> None:
        # Built once so a secret that is not valid base64 fails at start-up, not inside a delivery task.
        self._signer = Webhook(secret) if secret is not None else None
        self._max_attempts = max_attempts
        self._retry_base_seconds = retry_base_seconds
        self._url = url
        self._faults = faults
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[Delivery] = []
        self.deliveries: list[Delivery] = []

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
        self._held.clear()
        self.deliveries.clear()

    def publish(self, event_type: EventType, video_id: str) -> None:
        """Queue one event for delivery (called from the lifecycle loop; never blocks)."""
        if self._url() is None:
            return
        faults = self._faults()
        event = build_event(event_type, video_id, int(time.time()))
        # Python's default separators, as in OpenAI's published test vector.
        body = json.dumps(event)
        webhook_id = f"wh_{secrets.token_hex(16)}"
        copies = 2 if self._take_duplicate(faults) else 1
        batch: list[Delivery] = []
        for _ in range(copies):
            delivery = Delivery(webhook_id=webhook_id, event=event, body=body)
            self.deliveries.append(delivery)
            batch.append(delivery)
        if self._take_drop(faults):
            for delivery in batch:
                delivery.status = "dropped"
            return
        if faults.webhook_reorder_batch >= 2:
            now = time.monotonic()
            for delivery in batch:
                delivery.status = "held"
                delivery.held_since = now
            self._held.extend(batch)
            if len(self._held) >= faults.webhook_reorder_batch:
                self._release_held()
            return
        for delivery in batch:
            self._spawn(delivery)

    def flush_due(self) -> None:
        """Release a held reorder batch whose window has passed (called periodically)."""
        if not self._held:
            return
        faults = self._faults()
        oldest = self._held[0].held_since or 0.0
        window_over = time.monotonic() - oldest >= faults.webhook_reorder_window_seconds
        if window_over or faults.webhook_reorder_batch < 2:
            self._release_held()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for delivery in reversed(held):
            delivery.status = "pending"
            self._spawn(delivery)

    @staticmethod
    def _take_drop(faults: Faults) -> bool:
        if faults.webhook_drop_next > 0:
            faults.webhook_drop_next -= 1
            return True
        return faults.webhook_drop_probability > 0 and random.random() < faults.webhook_drop_probability

    @staticmethod
    def _take_duplicate(faults: Faults) -> bool:
        if faults.webhook_duplicate:
            return True
        return faults.webhook_duplicate_probability > 0 and random.random() < faults.webhook_duplicate_probability

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook {delivery.webhook_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
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

    async def _attempt(self, delivery: Delivery, number: int) -> bool:
        url = self._url()
        assert self._client is not None, "WebhookSender.start() was not awaited"
        if url is None:
            delivery.attempts.append(Attempt(number, time.time(), None, "webhook_url unset"))
            return False
        now = time.time()
        headers = signed_headers(self._signer, delivery.webhook_id, int(now), delivery.body)
        try:
            response = await self._client.post(url, content=delivery.body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(number, now, None, f"{type(exc).__name__}: {exc}"))
            return False
        delivery.attempts.append(Attempt(number, now, response.status_code, None))
        return 200 <= response.status_code < 300
