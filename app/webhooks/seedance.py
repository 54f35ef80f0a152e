"""The receiver's parts for `kind: seedance`: ModelArk's task callbacks, which nobody signs.

Ark POSTs the task object (`{"id": "cgt-…", "model", "status", "created_at", "updated_at", …}`, the body of
`GET /contents/generations/tasks/{id}`) to the `callback_url` given at create, on each status change. It
documents no signature, no secret and no delivery id. So `build_seedance_verifier` authenticates nothing: its
`check` only bounds and reads the body (UTF-8, a JSON object, a string `id` of a task id's shape, a short
`status`), and derives what the receiver keys on:
- `webhook_id` = `seedance:<task id>:<status>`, so Ark's retries of one callback (or two copies of it) are
  stored once and act once, while each new status of the task is a new delivery;
- `timestamp` = now (there is no sender's time to check).
`parse_seedance_event` then names the event `task.<status>` and its `object_id` the task id.

Why an unsigned callback is safe to accept: the receiver never acts on what a body says. It looks the task id
up among the videos we created (app/webhooks/service.py) and, for a known one, only queues a sync job, which
re-reads the task from Ark with our key and believes that answer alone. A forged callback can therefore at
most cause one extra authenticated poll of a video we already know (and, for a status Ark has not reached yet,
make Ark's genuine callback of that status a duplicate, which the reconciler's polling still covers); a
callback for an id we do not know is stored as an orphan and triggers no upstream call at all. The body cap,
the JSON depth and duplicate-key bounds, and the checks here keep a forger's cost to us at one small row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from app.core import json_body
from app.core.config import UpstreamSettings
from app.core.errors import WebhookMalformed
from app.webhooks.kinds import DeliveryVerifier
from app.webhooks.schemas import MAX_ID_CHARS, MAX_TYPE_CHARS, DeliveredEvent, _text
from app.webhooks.verify import Clock, SignedDelivery

EVENT_PREFIX: Final = "task."
STATUSES: Final = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
# Every status is about the task's video: any of them may be news (a finished task, or one that started).
SEEDANCE_VIDEO_EVENTS: Final = frozenset(EVENT_PREFIX + status for status in STATUSES)
# A task id as Ark issues them (`cgt-20250331175019-68d9t`): the adapter's rule, so an id that could never be
# ours is refused before it is stored.
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# A status word; an unknown one is still recorded (as an event type we ignore), but never a long or odd one.
STATUS = re.compile(r"[a-z_]{1,32}")
WEBHOOK_ID_PREFIX: Final = "seedance:"


def _task_fields(payload: str) -> tuple[dict[str, Any], str, str]:
    """The body as an object, its task id and its status; `WebhookMalformed` unless all are well formed."""
    try:
        document: Any = json_body.loads(payload)
    except json_body.JsonRefused as exc:
        raise WebhookMalformed(f"Callback body is not acceptable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise WebhookMalformed("Callback body is not a JSON object.")
    task_id = _text(document.get("id"), "id", MAX_ID_CHARS)
    if not TASK_ID.fullmatch(task_id):
        raise WebhookMalformed("Callback body field 'id' is not a Seedance task id.", param="id")
    status = document.get("status")
    if not isinstance(status, str) or not STATUS.fullmatch(status):
        raise WebhookMalformed("Callback body field 'status' must be a short lowercase word.", param="status")
    return document, task_id, status


class SeedanceCallbackCheck:
    """Bounds and reads an unsigned Ark callback (see the module docstring for why nothing is authenticated)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def check(self, body: bytes, headers: Mapping[str, str]) -> SignedDelivery:
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookMalformed("Callback body is not UTF-8.") from None
        _, task_id, status = _task_fields(payload)
        return SignedDelivery(
            webhook_id=f"{WEBHOOK_ID_PREFIX}{task_id}:{status}",
            timestamp=int(self._clock()),
            payload=payload,
        )


def build_seedance_verifier(settings: UpstreamSettings, secrets: list[str], clock: Clock) -> DeliveryVerifier:
    """The profile's callback check; Ark signs nothing, so `secrets` are not used."""
    return SeedanceCallbackCheck(clock)


def parse_seedance_event(delivery: SignedDelivery) -> DeliveredEvent:
    """`task.<status>` about the task `id`; `WebhookMalformed` unless the body is a well-formed task object."""
    _, task_id, status = _task_fields(delivery.payload)
    return DeliveredEvent(
        webhook_id=delivery.webhook_id,
        event_id=None,
        type=_text(EVENT_PREFIX + status, "status", MAX_TYPE_CHARS),
        object_id=task_id,
        body=delivery.payload,
    )
