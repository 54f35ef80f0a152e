"""What the webhook receiver was sent and what it answered: the last deliveries, headers included, in memory.

Rejected deliveries are never written to Postgres (anyone can send them, so storing them would let anyone
fill the database), and accepted ones are stored without their headers. To show an operator why a sender is
refused, this ASGI middleware watches the receiver's paths from the outside: it keeps each delivery's headers
(signatures and credentials redacted, values cut short) and the answer's status and error code, in a bounded
ring per API process. It never reads or buffers the request body, and leaves every other path alone.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.logging import redact_text, sensitive_key

# Enough to see a burst of refusals; bounded so a flood of junk costs a fixed amount of memory.
MAX_DELIVERIES: Final = 200
MAX_HEADERS: Final = 40
MAX_VALUE_CHARS: Final = 300
MAX_ANSWER_BYTES: Final = 4096
REDACTED: Final = "[redacted]"
# What is secret is decided by the log's rules (app/core/logging.py): a header whose name is a sensitive key
# is hidden whole, credentials inside any other value are masked. One exception: `webhook-signature` keeps
# its version tags (`v1,[redacted]`), which help debugging.
SIGNATURE_HEADER: Final = "webhook-signature"


@dataclass(frozen=True)
class TappedDelivery:
    received_at: datetime
    path: str
    status_code: int
    outcome: str  # verified, duplicate, rejected or error
    reason: str | None  # for a refusal: the error code and message the sender was given
    headers: list[tuple[str, str]]
    webhook_id: str | None


def redact_signature(value: str) -> str:
    """`v1,abc= v1,def=` → `v1,[redacted] v1,[redacted]`: how many signatures and of which versions, no MACs."""
    entries = [entry.partition(",")[0] + "," + REDACTED for entry in value.split()]
    return " ".join(entries) or REDACTED


def redacted_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    shown: list[tuple[str, str]] = []
    for name_bytes, value_bytes in raw[:MAX_HEADERS]:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1")
        if name == SIGNATURE_HEADER:  # before the rule below, which would hide it whole (a "signature")
            value = redact_signature(value)
        elif sensitive_key(name):
            value = REDACTED
        else:
            value = redact_text(value)  # before the cut, so no credential is cut in two and missed
            if len(value) > MAX_VALUE_CHARS:
                value = value[:MAX_VALUE_CHARS] + "…"
        shown.append((name, value))
    return shown


def judge(status_code: int, answer: bytes) -> tuple[str, str | None]:
    """The outcome as the sender saw it, from the receiver's answer (its body is small JSON of ours)."""
    try:
        body = json.loads(answer) if answer else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if 200 <= status_code < 300:
        return ("duplicate" if body.get("duplicate") else "verified"), None
    found = body.get("error")
    error: dict[str, object] = found if isinstance(found, dict) else {}
    reason = f"{status_code} {error.get('code') or 'error'}: {error.get('message') or 'no message'}"
    if error.get("param"):
        reason += f" ({error['param']})"
    return ("error" if status_code >= 500 else "rejected"), reason


class DeliveryLog:
    """The last `MAX_DELIVERIES` deliveries, newest first. Thread-safe: the ASGI server may run several loops."""

    def __init__(self, capacity: int = MAX_DELIVERIES) -> None:
        self._entries: deque[TappedDelivery] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, delivery: TappedDelivery) -> None:
        with self._lock:
            self._entries.appendleft(delivery)

    def recent(self, *, outcome: str | None = None) -> list[TappedDelivery]:
        with self._lock:
            entries = list(self._entries)
        return [entry for entry in entries if outcome is None or entry.outcome == outcome]


def webhook_paths(settings: Settings) -> frozenset[str]:
    """The `paths` argument of `WebhookTap`: every receiver the app mounts (the main one, one per profile)."""
    paths = {f"/webhooks/{name}" for name, profile in settings.upstreams.items() if profile.sends_webhooks}
    if settings.webhooks.enabled:
        paths.add(settings.webhooks.path.rstrip("/") or "/")
    return frozenset(paths)


class WebhookTap:
    """ASGI middleware recording POSTs to the receiver's `paths` (with or without a trailing slash)."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str], log: DeliveryLog) -> None:
        self.app = app
        self.paths = paths
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") not in self.paths:
            await self.app(scope, receive, send)
            return
        status_code = 500  # what the sender gets if the app fails before answering
        answer = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            elif message["type"] == "http.response.body" and len(answer) < MAX_ANSWER_BYTES:
                answer.extend(message.get("body", b"")[: MAX_ANSWER_BYTES - len(answer)])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            headers = redacted_headers(list(scope.get("headers", [])))
            outcome, reason = judge(status_code, bytes(answer))
            webhook_id = next((value for name, value in headers if name == "webhook-id"), None)
            self.log.add(
                TappedDelivery(
                    received_at=datetime.now(UTC),
                    path=scope["path"],
                    status_code=status_code,
                    outcome=outcome,
                    reason=reason,
                    headers=headers,
                    webhook_id=webhook_id,
                )
            )
