"""Signed webhook delivery, shared by both simulators: Standard Webhooks signing, retries, faults and the log.

A provider's sender builds each message (its body, and what the `/_sim/webhooks` log shows of it) and hands
it to `SignedSender.send`; from there on OpenAI's events and Google's travel alike. A message gets one
`webhook-id`, kept across retries and duplicate copies as the Standard Webhooks spec requires. Every attempt
re-signs the exact body bytes with a fresh `webhook-timestamp`, because receivers reject timestamps older than
five minutes and retries can span longer than that. Non-2xx answers and connection errors are retried with
exponential backoff from `webhook_retry_base_seconds`, up to `webhook_max_attempts`. `WebhookFaults` holds
the knobs applied here (drop, duplicate, delay); every delivery is recorded so tests can assert what was sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field
from standardwebhooks import Webhook

from app.core.config import SimulatorSettings

logger = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_SECONDS = 10.0
DeliveryStatus = Literal["pending", "held", "delivered", "failed", "dropped"]


class WebhookFaults(BaseModel):
    """The webhook knobs both simulators have, with one meaning; each provider's fault model extends it.

    Also the base of those models: a knob set refuses names it does not know.
    """

    model_config = ConfigDict(extra="forbid")

    webhook_drop_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    webhook_drop_next: int = Field(default=0, ge=0)
    webhook_duplicate: bool = False
    webhook_duplicate_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    webhook_delay_seconds: float = Field(default=0.0, ge=0.0)

    def take_drop(self) -> bool:
        """Whether this message goes unsent; consumes one from `webhook_drop_next` (checked before the odds)."""
        if self.webhook_drop_next > 0:
            self.webhook_drop_next -= 1
            return True
        return self.webhook_drop_probability > 0 and random.random() < self.webhook_drop_probability

    def take_duplicate(self) -> bool:
        """Whether this message is sent twice; `webhook_duplicate` wins over the odds."""
        if self.webhook_duplicate:
            return True
        return self.webhook_duplicate_probability > 0 and random.random() < self.webhook_duplicate_probability


FaultsT = TypeVar("FaultsT", bound=WebhookFaults)


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
    body: str
    # What the log shows of the message between its id and its status (e.g. event id, type and subject).
    summary: dict[str, Any]
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            **self.summary,
            "status": self.status,
            "attempts": [attempt.as_json() for attempt in self.attempts],
            "body": self.body,
        }


def signed_headers(
    signer: Webhook | None, webhook_id: str, timestamp: int, body: str, *, user_agent: str
) -> dict[str, str]:
    """The headers of one attempt; without a signer the message goes unsigned (a misconfigured upstream)."""
    headers = {
        "content-type": "application/json",
        "user-agent": user_agent,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
    }
    if signer is not None:
        headers["webhook-signature"] = signer.sign(webhook_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
    return headers


class SignedSender(Generic[FaultsT]):
    """Applies the webhook faults to each message and delivers it with retries on background tasks.

    `url` and `faults` are read at the moment they matter, so a `PATCH /_sim/config` or `/_sim/faults`
    applies to the next message or attempt.
    """

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        url: Callable[[], str | None],
        faults: Callable[[], FaultsT],
        user_agent: str,
        id_prefix: str,
    ) -> None:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else None
        # Built once so a secret that is not valid base64 fails at start-up, not inside a delivery task.
        self._signer = Webhook(secret) if secret is not None else None
        self._max_attempts = settings.webhook_max_attempts
        self._retry_base_seconds = settings.webhook_retry_base_seconds
        self._url = url
        self._faults = faults
        self._user_agent = user_agent
        self._id_prefix = id_prefix
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
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
        self.deliveries.clear()

    def send(self, body: str, summary: dict[str, Any]) -> None:
        """Queue one message for delivery (called from the lifecycle loop; never blocks)."""
        if self._url() is None:
            return
        faults = self._faults()
        webhook_id = f"{self._id_prefix}{secrets.token_hex(16)}"
        copies = 2 if faults.take_duplicate() else 1
        batch = [Delivery(webhook_id, body, summary) for _ in range(copies)]
        self.deliveries.extend(batch)
        if faults.take_drop():
            for delivery in batch:
                delivery.status = "dropped"
            return
        self._dispatch(batch, faults)

    def _dispatch(self, batch: list[Delivery], faults: FaultsT) -> None:
        """Set a message's copies on their way; a provider's sender may hold them back first."""
        for delivery in batch:
            self._spawn(delivery)

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
        assert self._client is not None, "the sender's start() was not awaited"
        if url is None:
            delivery.attempts.append(Attempt(number, time.time(), None, "webhook_url unset"))
            return False
        now = time.time()
        webhook_id, body = delivery.webhook_id, delivery.body
        headers = signed_headers(self._signer, webhook_id, int(now), body, user_agent=self._user_agent)
        try:
            response = await self._client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(number, now, None, f"{type(exc).__name__}: {exc}"))
            return False
        delivery.attempts.append(Attempt(number, now, response.status_code, None))
        return 200 <= response.status_code < 300
