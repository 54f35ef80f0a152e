"""Replicate's webhook events, read from a verified body: the prediction object itself.

Replicate POSTs the prediction, exactly as `GET /v1/predictions/{id}` shows it, to the `webhook` a create
named: no `type`, no `data` wrapper and no event id (deliveries are deduplicated on `webhook-id`, which
Replicate keeps across retries). The event's type is made from the prediction's `status`
(`prediction.succeeded`, `prediction.failed`, `prediction.canceled`, ...), and the prediction `id` names the
video to re-read. Only the terminal statuses are video events: the gateway asks for `completed` events only,
and a `start` or `logs` delivery (sent where the filter is not honoured) is recorded and ignored. Nothing in
the body is trusted beyond that id: the worker re-reads the prediction with the token before acting.
"""

from __future__ import annotations

import re
from typing import Any, Final

from app.core import json_body
from app.core.errors import WebhookMalformed
from app.webhooks.schemas import MAX_ID_CHARS, MAX_TYPE_CHARS, DeliveredEvent, _text
from app.webhooks.verify import SignedDelivery

# The statuses a prediction ends with; each is the end of a render the gateway is waiting for.
REPLICATE_VIDEO_EVENTS: Final = frozenset({"prediction.succeeded", "prediction.failed", "prediction.canceled"})
# A prediction id as Replicate makes them (lowercase letters and digits); nothing else is looked up.
_PREDICTION_ID = re.compile(r"[a-z0-9]{1,64}")
_STATUS = re.compile(r"[a-z_]{1,40}")


def parse_replicate_event(delivery: SignedDelivery) -> DeliveredEvent:
    """`WebhookMalformed` unless the body is a JSON object with a prediction `id` and a `status`."""
    try:
        # The shared parser (app/core/json_body.py): bounded depth, duplicate keys refused.
        document: Any = json_body.loads(delivery.payload)
    except json_body.JsonRefused as exc:
        raise WebhookMalformed(f"Webhook body is not acceptable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise WebhookMalformed("Webhook body is not a JSON object.")
    prediction_id = _text(document.get("id"), "id", MAX_ID_CHARS)
    if not _PREDICTION_ID.fullmatch(prediction_id):
        raise WebhookMalformed("Webhook body field 'id' is not a Replicate prediction id.", param="id")
    status = _text(document.get("status"), "status", MAX_TYPE_CHARS)
    if not _STATUS.fullmatch(status):
        raise WebhookMalformed("Webhook body field 'status' is not a prediction status.", param="status")
    return DeliveredEvent(
        webhook_id=delivery.webhook_id,
        event_id=None,
        type=f"prediction.{status}",
        object_id=prediction_id,
        body=delivery.payload,
    )
