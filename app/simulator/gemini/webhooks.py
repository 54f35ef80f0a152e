"""The Gemini simulator's project webhook: the `video.generated` event, sent as a signed message.

Google's documented event is `{"type": "video.generated", "data": {"video_uri": "..."}}`, signed the
Standard Webhooks way with the project's `whsec_` secret (headers `webhook-id` (`msg_…`), `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`). Only successful renders fire it: Google
documents no failure event, so errors and RAI-filtered operations send nothing. `data` deliberately carries
no operation name (Google documents none); the admin log records it beside the delivery for tests. Signing,
retries and the drop/duplicate/delay knobs are `app.simulator.sender`'s, shared with the OpenAI simulator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from app.core.config import SimulatorSettings
from app.simulator.gemini.faults import GeminiFaults
from app.simulator.sender import SignedSender

EVENT_TYPE = "video.generated"
USER_AGENT = "video-gateway-gemini-simulator/1.0"


def build_event(video_uri: str) -> dict[str, Any]:
    return {"type": EVENT_TYPE, "data": {"video_uri": video_uri}}


class GeminiWebhookSender(SignedSender[GeminiFaults]):
    """Sends `video.generated` events."""

    def __init__(
        self, settings: SimulatorSettings, *, url: Callable[[], str | None], faults: Callable[[], GeminiFaults]
    ) -> None:
        super().__init__(settings, url=url, faults=faults, user_agent=USER_AGENT, id_prefix="msg_")

    def publish_generated(self, operation_name: str, video_uri: str) -> None:
        """Queue one `video.generated` event (called from the lifecycle loop; never blocks)."""
        summary = {"type": EVENT_TYPE, "operation_name": operation_name, "video_uri": video_uri}
        self.send(json.dumps(build_event(video_uri)), summary)
