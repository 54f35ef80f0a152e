"""Fault knobs of the Replicate simulator, and the runtime-tunable part of its configuration.

`ReplicateFaults` mirrors the other simulators' knob names wherever the meaning is the same; all defaults
describe a healthy Replicate. Tests and benchmarks set knobs through `PUT`/`PATCH /_sim/faults`. Knobs:

Endings (decided when a prediction is created; counted down, checked in this order, before the prompt markers)
- `ending_success_next` (int): the next N creates succeed with a video, whatever the prompt says.
- `ending_error_next` (int): the next N creates end `failed` with a model error.
- `ending_moderation_next` (int): the next N creates end `failed` with Replicate's sensitive-content error.

Webhooks (per prediction, to the create's `webhook`; these are `app.simulator.sender.WebhookFaults`)
- `webhook_drop_probability` (0..1) and `webhook_drop_next` (int): deliveries silently not sent.
- `webhook_duplicate` (bool) and `webhook_duplicate_probability` (0..1): a delivery is sent twice with the
  same `webhook-id` (at-least-once delivery; receivers must deduplicate).
- `webhook_delay_seconds` (float): wait this long before the first attempt of every delivery.

API bursts (answered before the route runs; the request is still counted in `/_sim/stats`)
- `rate_limit_next` (int): the next N matching requests answer 429 `{"detail": "Request was throttled. ..."}`.
- `rate_limit_retry_after_seconds` (int): the `Retry-After` of those 429s (also the "~Ns" in their text).
- `server_error_next` (int): the next N matching requests answer `server_error_status`.
- `server_error_status` (500 | 502 | 503).
- `burst_routes` (list of route names): which routes the bursts hit; empty means every `/v1` route. Names:
  `create_prediction`, `get_prediction`, `list_predictions`, `cancel_prediction`, `serve_file`.

Files (the `output` URLs, standing in for replicate.delivery)
- `content_bytes_per_second` (int): throttle the body to this rate; 0 means unthrottled.
- `content_truncate_after_bytes` (int | None): send only this many bytes while `Content-Length` promises the
  whole file (the client sees an incomplete read).
- `content_faults_remaining` (int | None): how many more downloads the truncation applies to (counted down);
  None means every one while the knob is set.

Assets
- `synthetic_asset_bytes` (int | None): predictions created while this is set get a synthetic MP4 of N bytes
  (valid `ftyp` box, then padding) instead of an encoded one; overrides the settings value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.simulator.lifecycle import RuntimeConfig
from app.simulator.sender import WebhookFaults

RouteName = Literal["create_prediction", "get_prediction", "list_predictions", "cancel_prediction", "serve_file"]
Ending = Literal["success", "error", "moderation"]


class ReplicateFaults(WebhookFaults):
    """Every fault knob; the defaults describe a healthy upstream (see the module docstring)."""

    ending_success_next: int = Field(default=0, ge=0)
    ending_error_next: int = Field(default=0, ge=0)
    ending_moderation_next: int = Field(default=0, ge=0)

    rate_limit_next: int = Field(default=0, ge=0)
    rate_limit_retry_after_seconds: int = Field(default=30, ge=0, le=3600)
    server_error_next: int = Field(default=0, ge=0)
    server_error_status: Literal[500, 502, 503] = 500
    burst_routes: list[RouteName] = Field(default_factory=list)

    content_bytes_per_second: int = Field(default=0, ge=0)
    content_truncate_after_bytes: int | None = Field(default=None, ge=0)
    content_faults_remaining: int | None = Field(default=None, ge=0)

    synthetic_asset_bytes: int | None = Field(default=None, ge=0)

    def burst_applies_to(self, route_name: str) -> bool:
        return not self.burst_routes or route_name in self.burst_routes

    def take_forced_ending(self) -> Ending | None:
        """The ending a knob forces on this create, if any; consumes one from that knob's countdown."""
        if self.ending_success_next > 0:
            self.ending_success_next -= 1
            return "success"
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


class ReplicateConfig(RuntimeConfig):
    """The shared runtime config (`GET`/`PATCH /_sim/config`) and what only Replicate's simulator has.

    `webhook_url` (shared) is unused here: Replicate has no account-wide webhook, each create names its own.
    """

    # Scheme://host[:port] put in front of `urls` and `output` URLs; None uses the base URL of the create.
    public_base_url: str | None = None
    # Predictions per page of `GET /v1/predictions` (Replicate's pages hold 100).
    list_page_size: int = Field(default=100, ge=1, le=1000)
