"""Per provider kind: how a delivery is authenticated and how its verified body is read.

Every provider signs (or does not sign) its webhooks its own way, and shapes its events its own way; the
receiver (app/webhooks/routes.py) and the service never know which. A kind is picked once per profile, when
the app is built:

- `openai`, `gemini`, `replicate`: Standard Webhooks (`webhook-id` / `webhook-timestamp` /
  `webhook-signature`, HMAC-SHA256 with the profile's `whsec_` secrets);
- `fal`: Ed25519 over `request_id`, `user_id`, timestamp and the body's SHA-256, keys from fal's JWKS;
- `seedance`: unsigned; a delivery is only a hint, and the worker's authenticated re-read decides.

Whatever the kind, nothing in a body is trusted beyond naming which video to re-read (app/webhooks/service.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from app.core.config import UpstreamSettings
from app.webhooks.schemas import (
    GEMINI_VIDEO_EVENTS,
    OPENAI_VIDEO_EVENTS,
    DeliveredEvent,
    EventParser,
    parse_event,
    parse_gemini_event,
)
from app.webhooks.verify import Clock, SignedDelivery, Verifier, check_secrets


class DeliveryVerifier(Protocol):
    def check(self, body: bytes, headers: Mapping[str, str]) -> Awaitable[SignedDelivery]:
        """The authentic delivery, else `WebhookMalformed` (400) / `WebhookSignatureInvalid` (401) /
        `ServiceUnavailable` (503: cannot tell now, the sender should retry)."""
        ...


@dataclass(frozen=True)
class WebhookKind:
    parse: EventParser
    # The event types that are about a video (others are acknowledged and ignored).
    video_events: frozenset[str]
    # Builds the verifier from the profile's settings and its `whsec_` secrets (empty for unsigned kinds).
    verifier: Callable[[UpstreamSettings, list[str], Clock], DeliveryVerifier]
    # Whether the profile must be configured with `whsec_` secrets (checked when the app starts).
    uses_secrets: bool = True
    # The upstream ids an event's `object_id` may stand for in this profile: itself, except for fal, whose
    # webhook names the request but not the endpoint our upstream id also carries (one candidate per app).
    upstream_ids: Callable[[str, UpstreamSettings], list[str]] = lambda object_id, _settings: [object_id]


def _standard_webhooks(settings: UpstreamSettings, secrets: list[str], clock: Clock) -> DeliveryVerifier:
    return Verifier(secrets, clock=clock)


def webhook_kind(kind: str) -> WebhookKind:
    """The receiver's parts for `kind`; imported lazily so each provider's module loads only when used."""
    if kind == "gemini":
        return WebhookKind(parse_gemini_event, GEMINI_VIDEO_EVENTS, _standard_webhooks)
    if kind == "replicate":
        from app.webhooks.replicate import REPLICATE_VIDEO_EVENTS, parse_replicate_event

        return WebhookKind(parse_replicate_event, REPLICATE_VIDEO_EVENTS, _standard_webhooks)
    if kind == "fal":
        from app.upstream.fal import upstream_ids_for_request
        from app.webhooks.fal import FAL_VIDEO_EVENTS, build_fal_verifier, parse_fal_event

        return WebhookKind(
            parse_fal_event,
            FAL_VIDEO_EVENTS,
            build_fal_verifier,
            uses_secrets=False,
            upstream_ids=lambda request_id, settings: upstream_ids_for_request(request_id, settings.models),
        )
    if kind == "seedance":
        from app.webhooks.seedance import SEEDANCE_VIDEO_EVENTS, build_seedance_verifier, parse_seedance_event

        return WebhookKind(parse_seedance_event, SEEDANCE_VIDEO_EVENTS, build_seedance_verifier, uses_secrets=False)
    return WebhookKind(parse_event, OPENAI_VIDEO_EVENTS, _standard_webhooks)


def check_profile_secrets(kind: str, secrets: list[str]) -> None:
    """ValueError unless a kind that signs with `whsec_` secrets has usable ones (fail closed at start)."""
    if webhook_kind(kind).uses_secrets:
        check_secrets(secrets)


__all__ = ["DeliveredEvent", "DeliveryVerifier", "WebhookKind", "check_profile_secrets", "webhook_kind"]
