"""The fal simulator's completion webhooks: one per request, to its own `fal_webhook`, signed as fal signs.

fal POSTs `{"request_id", "gateway_request_id", "status": "OK" | "ERROR", "payload", "error"}` to the URL the
submit named, once the request ends (a video, an error or a content-policy refusal alike; a cancelled request
sends none here). Each attempt is signed anew with Ed25519 (`app.simulator.fal.signing`) under fal's four
`X-Fal-Webhook-*` headers and the attempt's own timestamp, so a retry hours later is still fresh. Retries,
the drop/duplicate/delay knobs and the `/_sim/webhooks` log are `app.simulator.sender.SignedSender`'s; only
the destination (per request, not one URL) and the headers are fal's. The delivery log's `webhook_id` is the
request id, and each entry names its `url`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from app.core.config import SimulatorSettings
from app.simulator.fal.faults import FalFaults
from app.simulator.fal.signing import SigningKeys
from app.simulator.sender import ATTEMPT_TIMEOUT_SECONDS, Attempt, Delivery, SignedSender

USER_AGENT = "video-gateway-fal-simulator/1.0"


class FalWebhookSender(SignedSender[FalFaults]):
    """Sends completion deliveries; `transport` lets in-process tests deliver to an ASGI app."""

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        faults: Callable[[], FalFaults],
        keys: Callable[[], SigningKeys],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # No profile-wide URL: each delivery carries its request's own (the base's `url` is never consulted).
        super().__init__(settings, url=lambda: None, faults=faults, user_agent=USER_AGENT, id_prefix="")
        self._keys = keys
        self._transport = transport

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=ATTEMPT_TIMEOUT_SECONDS, follow_redirects=False, transport=self._transport
        )

    def publish(self, url: str, request_id: str, body: dict[str, Any]) -> None:
        """Queue the delivery of one request's ending (called from the lifecycle loop; never blocks)."""
        faults = self._faults()
        summary = {"url": url, "event": body["status"]}
        copies = 2 if faults.take_duplicate() else 1
        text = json.dumps(body)
        batch = [Delivery(request_id, text, dict(summary)) for _ in range(copies)]
        self.deliveries.extend(batch)
        if faults.take_drop():
            for delivery in batch:
                delivery.status = "dropped"
            return
        self._dispatch(batch, faults)

    async def _attempt(self, delivery: Delivery, number: int) -> bool:
        assert self._client is not None, "the sender's start() was not awaited"
        now = time.time()
        timestamp = int(now) + self._faults().webhook_timestamp_offset_seconds
        raw = delivery.body.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **self._keys().headers(delivery.webhook_id, timestamp, raw),
        }
        try:
            response = await self._client.post(str(delivery.summary["url"]), content=raw, headers=headers)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(number, now, None, f"{type(exc).__name__}: {exc}"))
            return False
        delivery.attempts.append(Attempt(number, now, response.status_code, None))
        return 200 <= response.status_code < 300
