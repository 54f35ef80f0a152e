"""The shapes of the webhook receiver: the event we accept (parsed from a verified body) and our answer.

One parser per provider kind, chosen once when the receiver is built (`EVENT_PARSERS`):
- `openai`: thin events (`{"id": "evt_…", "type": "video.completed", "data": {"id": "video_…"}}`;
  docs/upstream-contract.md#webhook-events). We require only what we act on: a string `type` and `data.id`;
  the event `id` is optional but, when present, a second deduplication key.
- `gemini`: `{"type": "video.generated", "data": {"video_uri": "…"}}`. Google documents nothing else in
  `data` and sends no failure event, so a delivery is a hint: it names the operation only if the body
  happens to carry it (`data.name` / `data.operation`), else none, and the receiver then polls the
  profile's unfinished videos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from app.core import json_body
from app.core.errors import WebhookMalformed
from app.webhooks.verify import SignedDelivery

# Column widths of webhook_events (event_type 100, event_id and upstream_video_id 200).
MAX_TYPE_CHARS: Final = 100
MAX_ID_CHARS: Final = 200


@dataclass(frozen=True)
class DeliveredEvent:
    """A verified delivery, parsed: what the service records and acts on."""

    webhook_id: str
    event_id: str | None
    type: str
    # For video events, the upstream video id; None when the event does not say (a hint: poll the profile).
    object_id: str | None
    body: str
    # The video a valid `vg_ref` in the callback URL names (app/upstream/reference.py): kept on an orphan, so
    # the reconciler can adopt the render for a create cut off before upstream answered. None without one.
    referenced_video_id: str | None = None


class WebhookAck(BaseModel):
    """The 2xx answer, sent only once the delivery is durably recorded (or was already)."""

    received: bool = True
    duplicate: bool


def _document(delivery: SignedDelivery) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body as a JSON object and its `data` object, else `WebhookMalformed`."""
    try:
        # The shared parser (app/core/json_body.py): a 64 KiB body of "[" is refused by its depth bound, and a
        # key given twice (which two readers could resolve differently) is refused too.
        document: Any = json_body.loads(delivery.payload)
    except json_body.JsonRefused as exc:
        raise WebhookMalformed(f"Webhook body is not acceptable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise WebhookMalformed("Webhook body is not a JSON object.")
    data = document.get("data")
    if not isinstance(data, dict):
        raise WebhookMalformed("Webhook body has no 'data' object.", param="data")
    return document, data


def parse_event(delivery: SignedDelivery) -> DeliveredEvent:
    """`WebhookMalformed` unless the body is a JSON object with a string `type` and `data.id`."""
    document, data = _document(delivery)
    event_id = document.get("id")
    return DeliveredEvent(
        webhook_id=delivery.webhook_id,
        event_id=None if event_id is None else _text(event_id, "id", MAX_ID_CHARS),
        type=_text(document.get("type"), "type", MAX_TYPE_CHARS),
        object_id=_text(data.get("id"), "data.id", MAX_ID_CHARS),
        body=delivery.payload,
    )


def _text(value: object, name: str, max_chars: int) -> str:
    # Printable only: a NUL or a lone surrogate would make Postgres refuse the row, and a refused row is a
    # 5xx the sender would retry for days.
    if not isinstance(value, str) or not 0 < len(value) <= max_chars or not value.isprintable():
        raise WebhookMalformed(
            f"Webhook body field '{name}' must be a string of 1 to {max_chars} printable characters.", param=name
        )
    return value


def parse_gemini_event(delivery: SignedDelivery) -> DeliveredEvent:
    """`WebhookMalformed` unless the body is a JSON object with a string `type` and a `data` object."""
    document, data = _document(delivery)
    event_id = document.get("id")
    operation = next((data[key] for key in ("name", "operation") if isinstance(data.get(key), str)), None)
    return DeliveredEvent(
        webhook_id=delivery.webhook_id,
        event_id=None if event_id is None else _text(event_id, "id", MAX_ID_CHARS),
        type=_text(document.get("type"), "type", MAX_TYPE_CHARS),
        object_id=None if operation is None else _text(operation, "data.name", MAX_ID_CHARS),
        body=delivery.payload,
    )


EventParser = Callable[[SignedDelivery], DeliveredEvent]

# Per provider kind: how a verified body becomes an event, and which event types are about a video.
OPENAI_VIDEO_EVENTS: Final = frozenset({"video.completed", "video.failed"})
GEMINI_VIDEO_EVENTS: Final = frozenset({"video.generated"})
EVENT_PARSERS: Final[dict[str, tuple[EventParser, frozenset[str]]]] = {
    "openai": (parse_event, OPENAI_VIDEO_EVENTS),
    "gemini": (parse_gemini_event, GEMINI_VIDEO_EVENTS),
}
