"""OpenAI's webhook events: `video.completed` / `video.failed`, as the simulator builds and sends them.

Each event is OpenAI's event object (an `evt_…` id, only the video id in `data`) sent as one message of
`app.simulator.sender`, which signs, retries and applies the drop/duplicate/delay knobs. The message's
`webhook-id` is `wh_…`, distinct from the body's `evt_…` id. On top, this sender holds messages back for the
OpenAI simulator's reorder knobs (`webhook_reorder_batch`, `webhook_reorder_window_seconds`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from standardwebhooks import Webhook

from app.core.config import SimulatorSettings
from app.simulator import sender
from app.simulator.faults import Faults
from app.simulator.sender import Delivery, SignedSender

USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
EventType = Literal["video.completed", "video.failed"]


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
    """The headers of one attempt at an OpenAI event (what OpenAI's published test vector checks)."""
    return sender.signed_headers(signer, webhook_id, timestamp, body, user_agent=USER_AGENT)


class WebhookSender(SignedSender[Faults]):
    """Sends OpenAI's events, holding them back while the reorder knobs say so."""

    def __init__(
        self, settings: SimulatorSettings, *, url: Callable[[], str | None], faults: Callable[[], Faults]
    ) -> None:
        super().__init__(settings, url=url, faults=faults, user_agent=USER_AGENT, id_prefix="wh_")
        self._held: list[Delivery] = []
        self._held_since: float | None = None

    def publish(self, event_type: EventType, video_id: str) -> None:
        """Queue one event for delivery (called from the lifecycle loop; never blocks)."""
        event = build_event(event_type, video_id, int(time.time()))
        summary = {"event_id": event["id"], "type": event_type, "video_id": video_id}
        # Python's default separators, as in OpenAI's published test vector.
        self.send(json.dumps(event), summary)

    def flush_due(self) -> None:
        """Release a held reorder batch whose window has passed (called periodically)."""
        if not self._held:
            return
        faults = self._faults()
        window_over = time.monotonic() - (self._held_since or 0.0) >= faults.webhook_reorder_window_seconds
        if window_over or faults.webhook_reorder_batch < 2:
            self._release_held()

    def reset(self) -> None:
        super().reset()
        self._held.clear()
        self._held_since = None

    def _dispatch(self, batch: list[Delivery], faults: Faults) -> None:
        if faults.webhook_reorder_batch < 2:
            super()._dispatch(batch, faults)
            return
        for delivery in batch:
            delivery.status = "held"
        if not self._held:
            self._held_since = time.monotonic()
        self._held.extend(batch)
        if len(self._held) >= faults.webhook_reorder_batch:
            self._release_held()

    def _release_held(self) -> None:
        """Send the held messages newest first."""
        held, self._held, self._held_since = self._held, [], None
        for delivery in reversed(held):
            delivery.status = "pending"
            self._spawn(delivery)
