"""Fault knobs of the fal simulator, and the runtime-tunable part of its configuration.

`FalFaults` mirrors the other simulators' knob names wherever the meaning is the same; all defaults describe
a healthy fal. Tests set knobs through `PUT`/`PATCH /_sim/faults`. Knobs:

Endings (decided when a request is submitted; counted down, checked in this order, before the prompt markers)
- `ending_video_next` (int): the next N requests end with a video, whatever the prompt says.
- `ending_error_next` (int): the next N requests end `COMPLETED` with an `error` (`runner_server_error`).
- `ending_moderation_next` (int): the next N requests end `COMPLETED` with a content-policy error.

Webhooks (`app.simulator.sender.WebhookFaults`, shared with the other simulators)
- `webhook_drop_probability` (0..1), `webhook_drop_next` (int): deliveries silently not sent.
- `webhook_duplicate` (bool), `webhook_duplicate_probability` (0..1): a delivery is sent twice.
- `webhook_delay_seconds` (float): wait this long before the first attempt of every delivery.
- `webhook_timestamp_offset_seconds` (int): added to the signed `X-Fal-Webhook-Timestamp` (a stale or
  future-dated delivery, for the receiver's ±300 s window).

Key set
- `jwks_unavailable` (bool): `GET /.well-known/jwks.json` answers 503 (a receiver with no cached key must
  answer 503 so fal retries).

API bursts (answered before the route runs; the request is still counted in `/_sim/stats`)
- `rate_limit_next` (int): the next N matching requests answer 429 with `Retry-After: 1`.
- `server_error_next` (int): the next N matching requests answer `server_error_status`.
- `server_error_status` (500 | 502 | 503 | 504), with fal's `X-Fal-Error-Type`.
- `burst_routes` (list of route names): which routes the bursts hit; empty means every queue route. Names:
  `submit`, `status`, `result`, `cancel`.

Download (the `/files/...` CDN stand-in)
- `content_bytes_per_second` (int): throttle the body; 0 means unthrottled.
- `content_truncate_after_bytes` (int | None), `content_faults_remaining` (int | None): send only this many
  bytes while `Content-Length` promises the whole file, for the next N downloads (None: every one).

Assets
- `synthetic_asset_bytes` (int | None): requests submitted while this is set get a synthetic MP4 of N bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.simulator.lifecycle import RuntimeConfig
from app.simulator.sender import WebhookFaults

RouteName = Literal["submit", "status", "result", "cancel"]
Ending = Literal["video", "error", "moderation"]


class FalFaults(WebhookFaults):
    """Every fault knob; the defaults describe a healthy fal (see the module docstring)."""

    ending_video_next: int = Field(default=0, ge=0)
    ending_error_next: int = Field(default=0, ge=0)
    ending_moderation_next: int = Field(default=0, ge=0)

    webhook_timestamp_offset_seconds: int = 0
    jwks_unavailable: bool = False

    rate_limit_next: int = Field(default=0, ge=0)
    server_error_next: int = Field(default=0, ge=0)
    server_error_status: Literal[500, 502, 503, 504] = 500
    burst_routes: list[RouteName] = Field(default_factory=list)

    content_bytes_per_second: int = Field(default=0, ge=0)
    content_truncate_after_bytes: int | None = Field(default=None, ge=0)
    content_faults_remaining: int | None = Field(default=None, ge=0)

    synthetic_asset_bytes: int | None = Field(default=None, ge=0)

    def burst_applies_to(self, route_name: str) -> bool:
        return not self.burst_routes or route_name in self.burst_routes

    def take_forced_ending(self) -> Ending | None:
        """The ending a knob forces on this request, if any; consumes one from that knob's countdown."""
        if self.ending_video_next > 0:
            self.ending_video_next -= 1
            return "video"
        if self.ending_error_next > 0:
            self.ending_error_next -= 1
            return "error"
        if self.ending_moderation_next > 0:
            self.ending_moderation_next -= 1
            return "moderation"
        return None

    def take_truncation(self) -> int | None:
        """The byte limit for this download, if truncation applies; consumes one from the countdown."""
        if self.content_truncate_after_bytes is None:
            return None
        if self.content_faults_remaining is None:
            return self.content_truncate_after_bytes
        if self.content_faults_remaining == 0:
            return None
        self.content_faults_remaining -= 1
        return self.content_truncate_after_bytes


class FalConfig(RuntimeConfig):
    """The shared runtime config (`GET`/`PATCH /_sim/config`) plus the base of file URLs.

    `webhook_url` is kept for the shared shape but unused: fal takes the webhook per request (`fal_webhook`).
    """

    # Scheme://host[:port] of the `/files/...` URLs in results (fal's CDN is another host than the queue);
    # None uses the base URL of the submit request.
    public_base_url: str | None = None
