"""fal.ai's webhooks: the Ed25519 signature check (keys from fal's JWKS) and the event a verified body is.

fal POSTs to the `fal_webhook` URL of each request once it ends, success or failure, with
`{"request_id", "gateway_request_id", "status": "OK" | "ERROR", "payload": <result or {"detail"}>, "error"?}`
and four headers: `X-Fal-Webhook-Request-Id`, `X-Fal-Webhook-User-Id`, `X-Fal-Webhook-Timestamp` (Unix
seconds) and `X-Fal-Webhook-Signature` (hex Ed25519 over `"{request id}\\n{user id}\\n{timestamp}\\n{sha256 hex
of the body}"`). The public keys are an OKP/Ed25519 JWKS at the profile's `webhook_jwks_url`.

The key set is fetched (by `app.upstream.fal.fetch_key_set`, where HTTP to fal lives) when first needed and
cached (at most `MAX_KEYS` keys, for at most 24 h). A signature that matches no cached key fetches it again,
but never more than once per `refresh_interval` seconds, failed fetches included: a flood of forged
deliveries costs fal's JWKS host one request per interval, not one per delivery. With no usable key set
(fal's JWKS unreachable and nothing cached, or the cache past its age) the answer is 503, so fal retries
later; malformed headers are 400; a signature no key matches, or a timestamp more than 300 s off, is 401.

A delivery is a hint like every other kind's: it names the request (`object_id` is fal's request id); the
worker re-reads the render through the adapter. Our upstream id is `{owner}/{app}:{request id}` (the body has
no endpoint), so the receiver finds the video by the ids `app.upstream.fal.upstream_ids_for_request` lists.
Deduplication: fal sends one completion per request, so `webhook_id` is `{request id}:{status}`; a retry of
the same delivery, re-signed with a new timestamp, is recognised as the duplicate it is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.core import json_body
from app.core.config import UpstreamSettings
from app.core.errors import ServiceUnavailable, WebhookMalformed, WebhookSignatureInvalid
from app.upstream.fal import KeySetUnavailable, Transport, fetch_key_set
from app.webhooks.schemas import MAX_ID_CHARS, MAX_TYPE_CHARS, DeliveredEvent, _text
from app.webhooks.verify import TOLERANCE_SECONDS, Clock, SignedDelivery

logger = logging.getLogger(__name__)

# The body's `status`: one delivery per request, when it ends.
FAL_VIDEO_EVENTS: Final = frozenset({"OK", "ERROR"})

REQUEST_ID_HEADER: Final = "x-fal-webhook-request-id"
USER_ID_HEADER: Final = "x-fal-webhook-user-id"
TIMESTAMP_HEADER: Final = "x-fal-webhook-timestamp"
SIGNATURE_HEADER: Final = "x-fal-webhook-signature"
HEADERS: Final = (REQUEST_ID_HEADER, USER_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)

# fal's request ids are UUIDs; the id is signed, stored and put in `webhook_id`, so it is bounded here.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# Visible ASCII: no newline can slip into the signed message and shift its fields.
_USER_ID = re.compile(r"[!-~]{1,200}")
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")  # 64 bytes
_STATUS_TOKEN = re.compile(r"[A-Z_]{1,20}")

MAX_KEYS: Final = 16
MAX_KEY_AGE_SECONDS: Final = 24 * 3600.0
REFRESH_INTERVAL_SECONDS: Final = 60.0
MAX_JWKS_BYTES: Final = 64 * 1024
JWKS_TIMEOUT_SECONDS: Final = 5.0
RETRY_AFTER_SECONDS: Final = 30


class JwksUnavailable(Exception):
    """The key set could not be fetched or read."""


@dataclass(frozen=True)
class _KeySet:
    keys: tuple[Ed25519PublicKey, ...]
    fetched_at: float


def parse_jwks(document: Any) -> tuple[Ed25519PublicKey, ...]:
    """The OKP/Ed25519 keys of a JWKS document (others skipped), at most `MAX_KEYS`; `JwksUnavailable` if none."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksUnavailable("the key set has no 'keys' list")
    keys: list[Ed25519PublicKey] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        encoded = entry.get("x")
        if not isinstance(encoded, str) or len(encoded) > 64:
            continue
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
        if len(keys) == MAX_KEYS:
            break
    if not keys:
        raise JwksUnavailable("the key set holds no Ed25519 key")
    return tuple(keys)


class FalVerifier:
    """Checks fal's deliveries for one profile; keeps that profile's cached key set."""

    def __init__(
        self,
        jwks_url: str,
        *,
        clock: Clock = time.time,
        transport: Transport | None = None,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        max_key_age: float = MAX_KEY_AGE_SECONDS,
    ) -> None:
        self._jwks_url = jwks_url
        self._clock = clock
        self._transport = transport
        self._refresh_interval = refresh_interval
        self._max_key_age = max_key_age
        self._keys: _KeySet | None = None
        # When a fetch was last tried, successful or not: the rate limit counts both.
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many fetches were tried (tests and logs)

    async def check(self, body: bytes, headers: Mapping[str, str]) -> SignedDelivery:
        """The authentic delivery, else `WebhookMalformed` / `WebhookSignatureInvalid` / `ServiceUnavailable`."""
        request_id, user_id, timestamp, signature = parse_headers(headers)
        now = self._clock()
        if timestamp < now - TOLERANCE_SECONDS:
            raise WebhookSignatureInvalid("Webhook timestamp is too old.", param=TIMESTAMP_HEADER)
        if timestamp > now + TOLERANCE_SECONDS:
            raise WebhookSignatureInvalid("Webhook timestamp is too new.", param=TIMESTAMP_HEADER)
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookMalformed("Webhook body is not UTF-8.") from None
        message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        cached = await self._current_keys()
        if not _matches(cached.keys, signature, message):
            # A key fal has just started signing with? Ask again, if the last ask is long enough ago.
            refreshed = await self._refresh_after_miss(cached)
            if refreshed is None or not _matches(refreshed.keys, signature, message):
                raise WebhookSignatureInvalid("No webhook signature matches.", param=SIGNATURE_HEADER)
        return SignedDelivery(webhook_id=f"{request_id}:{_status_token(payload)}", timestamp=timestamp, payload=payload)

    # ----- the key set --------------------------------------------------------------------------

    async def _current_keys(self) -> _KeySet:
        """The cached keys while fresh; else a fetch (rate-limited); 503 when there are none to use."""
        async with self._lock:
            cached = self._keys
            if cached is not None and self._clock() - cached.fetched_at < self._max_key_age:
                return cached
            if self._may_fetch():
                cached = await self._fetch()
            if cached is None or self._clock() - cached.fetched_at >= self._max_key_age:
                # Nothing to check against, or keys too old to trust: fal should try again later.
                raise ServiceUnavailable(
                    "fal's webhook signing keys could not be fetched; retry later.",
                    retry_after_seconds=RETRY_AFTER_SECONDS,
                )
            return cached

    async def _refresh_after_miss(self, seen: _KeySet) -> _KeySet | None:
        """Fresh keys after a signature matched none of `seen`; None when a fetch is not allowed or fails."""
        async with self._lock:
            if self._keys is not None and self._keys is not seen:
                return self._keys  # another delivery refreshed them meanwhile
            if not self._may_fetch():
                return None
            fetched = await self._fetch()
            return fetched if fetched is not seen else None

    def _may_fetch(self) -> bool:
        return self._last_attempt is None or self._clock() - self._last_attempt >= self._refresh_interval

    async def _fetch(self) -> _KeySet | None:
        """Fetch the key set (call with the lock held); on failure the cache stays as it was."""
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            raw = await fetch_key_set(
                self._jwks_url,
                max_bytes=MAX_JWKS_BYTES,
                timeout_seconds=JWKS_TIMEOUT_SECONDS,
                transport=self._transport,
            )
            fetched = _KeySet(parse_jwks(json_body.loads(raw)), fetched_at=self._clock())
        except (KeySetUnavailable, JwksUnavailable, json_body.JsonRefused) as exc:
            logger.warning("fal JWKS fetch from %s failed: %s", self._jwks_url, exc)
            return self._keys
        self._keys = fetched
        return fetched


def _matches(keys: tuple[Ed25519PublicKey, ...], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _status_token(payload: str) -> str:
    """The body's `status` when it is a short upper-case word, for the dedupe id; else `OTHER`."""
    try:
        document = json_body.loads(payload)
    except json_body.JsonRefused:
        return "OTHER"
    status = document.get("status") if isinstance(document, dict) else None
    return status if isinstance(status, str) and _STATUS_TOKEN.fullmatch(status) else "OTHER"


def parse_headers(headers: Mapping[str, str]) -> tuple[str, str, int, bytes]:
    """(request id, user id, timestamp, signature bytes); `WebhookMalformed` unless each is there once, well formed."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in HEADERS:
            if key in found:
                raise WebhookMalformed(f"The {key} header is repeated.", param=key)
            found[key] = value
    for name in HEADERS:
        if not found.get(name):
            raise WebhookMalformed(f"Missing {name} header.", param=name)
    if not _REQUEST_ID.fullmatch(found[REQUEST_ID_HEADER]):
        raise WebhookMalformed(
            f"{REQUEST_ID_HEADER} must be 1 to 100 letters, digits, '-' or '_'.", param=REQUEST_ID_HEADER
        )
    if not _USER_ID.fullmatch(found[USER_ID_HEADER]):
        raise WebhookMalformed(f"{USER_ID_HEADER} must be 1 to 200 visible ASCII characters.", param=USER_ID_HEADER)
    if not _TIMESTAMP.fullmatch(found[TIMESTAMP_HEADER]):
        raise WebhookMalformed(f"{TIMESTAMP_HEADER} must be whole Unix seconds (digits only).", param=TIMESTAMP_HEADER)
    if not _SIGNATURE.fullmatch(found[SIGNATURE_HEADER]):
        raise WebhookMalformed(f"{SIGNATURE_HEADER} must be a hex Ed25519 signature.", param=SIGNATURE_HEADER)
    return (
        found[REQUEST_ID_HEADER],
        found[USER_ID_HEADER],
        int(found[TIMESTAMP_HEADER]),
        bytes.fromhex(found[SIGNATURE_HEADER]),
    )


def build_fal_verifier(settings: UpstreamSettings, secrets: list[str], clock: Clock) -> FalVerifier:
    """The profile's verifier (app/webhooks/kinds.py); fal signs with its own keys, so `secrets` is unused."""
    return FalVerifier(settings.webhook_jwks_url, clock=clock)


def parse_fal_event(delivery: SignedDelivery) -> DeliveredEvent:
    """`WebhookMalformed` unless the body is a JSON object naming the signed request and a string `status`."""
    try:
        document: Any = json_body.loads(delivery.payload)
    except json_body.JsonRefused as exc:
        raise WebhookMalformed(f"Webhook body is not acceptable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise WebhookMalformed("Webhook body is not a JSON object.")
    request_id = _text(document.get("request_id"), "request_id", MAX_ID_CHARS)
    # The header's id is what the signature covers; a body about another request is not this delivery's.
    if request_id != delivery.webhook_id.partition(":")[0]:
        raise WebhookMalformed("Webhook body names another request than its signed headers.", param="request_id")
    status = _text(document.get("status"), "status", MAX_TYPE_CHARS)
    return DeliveredEvent(
        webhook_id=delivery.webhook_id,
        event_id=None,
        type=status,
        object_id=request_id,
        body=delivery.payload,
    )


__all__ = ["FAL_VIDEO_EVENTS", "FalVerifier", "build_fal_verifier", "parse_fal_event", "parse_jwks"]
