"""The Replicate simulator's webhooks: the prediction object, POSTed to each create's own `webhook` URL.

Replicate has no account-wide webhook: a create names its `webhook` and, optionally, which events it wants
(`webhook_events_filter`, of `start`, `output`, `logs`, `completed`; all of them when absent). The body of every
event is the prediction object as `GET /v1/predictions/{id}` shows it at that moment; there is no `type` or
`data` wrapper. Deliveries are signed the Standard Webhooks way with the account's `whsec_` secret (headers
`webhook-id`, kept across retries, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`).
Signing, retries and the drop/duplicate/delay knobs are `app.simulator.sender`'s, shared with the other
simulators.

The shared sender reads its destination from a callable when each attempt starts; here that callable reads
a context variable set around `send`. Each delivery runs on a task of its own, and a task copies the context
it was created in, so every delivery (and its retries) keeps the URL of the prediction it is about.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable

from app.core.config import SimulatorSettings
from app.simulator.replicate.faults import ReplicateFaults
from app.simulator.replicate.state import Prediction
from app.simulator.sender import SignedSender

USER_AGENT = "video-gateway-replicate-simulator/1.0"
_destination: contextvars.ContextVar[str | None] = contextvars.ContextVar("replicate_webhook", default=None)


class ReplicateWebhookSender(SignedSender[ReplicateFaults]):
    """Sends prediction events to the URL each prediction was created with."""

    def __init__(self, settings: SimulatorSettings, *, faults: Callable[[], ReplicateFaults]) -> None:
        super().__init__(settings, url=_destination.get, faults=faults, user_agent=USER_AGENT, id_prefix="msg_")

    def publish(self, prediction: Prediction, event: str, *, base_url: str) -> None:
        """Queue one event about `prediction` if it asked for this event (called from the lifecycle; never blocks)."""
        if prediction.webhook is None or event not in prediction.webhook_events:
            return
        summary = {
            "event": event,
            "prediction_id": prediction.id,
            "prediction_status": prediction.status,
            "url": prediction.webhook,
        }
        token = _destination.set(prediction.webhook)
        try:
            self.send(json.dumps(prediction.as_json(base_url)), summary)
        finally:
            _destination.reset(token)
