"""Fault knobs of the Gemini simulator, and the runtime-tunable part of its configuration.

`GeminiFaults` mirrors the OpenAI simulator's `Faults` names wherever the meaning is the same; all defaults
describe a healthy Google. Tests and benchmarks set knobs through `PUT`/`PATCH /_sim/faults`. Knobs:

Endings (decided when an operation is created; counted down, checked in this order, before the prompt markers)
- `ending_sample_next` (int): the next N creates end with a video sample, whatever the prompt says.
- `ending_error_next` (int): the next N creates end with `error` (code 13, INTERNAL).
- `ending_moderation_next` (int): the next N creates end RAI-filtered (no samples).

Webhooks (the `video.generated` event; these are `app.simulator.sender.WebhookFaults`, shared with OpenAI's)
- `webhook_drop_probability` (0..1) and `webhook_drop_next` (int): deliveries silently not sent, the way a
  lost event would look to a receiver.
- `webhook_duplicate` (bool) and `webhook_duplicate_probability` (0..1): a delivery is sent twice with the
  same `webhook-id` (at-least-once delivery; receivers must deduplicate).
- `webhook_delay_seconds` (float): wait this long before the first attempt of every delivery.

API bursts (answered before the route runs; the request is still counted in `/_sim/stats`)
- `rate_limit_next` (int): the next N matching requests answer 429 RESOURCE_EXHAUSTED.
- `server_error_next` (int): the next N matching requests answer `server_error_status`.
- `server_error_status` (500 INTERNAL | 503 UNAVAILABLE).
- `burst_routes` (list of route names): which routes the bursts hit; empty means every `/v1beta` route. Names:
  `predict_long_running`, `get_operation`, `download_file`.

Download (the redirect target that serves the MP4)
- `content_bytes_per_second` (int): throttle the body to this rate; 0 means unthrottled.
- `content_truncate_after_bytes` (int | None): send only this many bytes while `Content-Length` promises the
  whole file (the client sees an incomplete read).
- `content_faults_remaining` (int | None): how many more downloads the truncation applies to (counted
  down); None means every one while the knob is set.
- `content_redirect_host` (str | None): host name to put in the 302 (e.g. `localhost` when the request came
  to `127.0.0.1`, so the redirect crosses hosts as Google's does); port and scheme are kept.

Assets
- `synthetic_asset_bytes` (int | None): operations created while this is set get a synthetic MP4 of N bytes
  (valid `ftyp` box, then padding) instead of an encoded one; overrides the settings value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.simulator.lifecycle import RuntimeConfig
from app.simulator.sender import WebhookFaults

RouteName = Literal["predict_long_running", "get_operation", "download_file"]
Ending = Literal["sample", "error", "moderation"]


class GeminiFaults(WebhookFaults):
    """Every fault knob; the defaults describe a healthy upstream (see the module docstring)."""

    ending_sample_next: int = Field(default=0, ge=0)
    ending_error_next: int = Field(default=0, ge=0)
    ending_moderation_next: int = Field(default=0, ge=0)

    rate_limit_next: int = Field(default=0, ge=0)
    server_error_next: int = Field(default=0, ge=0)
    server_error_status: Literal[500, 503] = 500
    burst_routes: list[RouteName] = Field(default_factory=list)

    content_bytes_per_second: int = Field(default=0, ge=0)
    content_truncate_after_bytes: int | None = Field(default=None, ge=0)
    content_faults_remaining: int | None = Field(default=None, ge=0)
    content_redirect_host: str | None = None

    synthetic_asset_bytes: int | None = Field(default=None, ge=0)

    def burst_applies_to(self, route_name: str) -> bool:
        return not self.burst_routes or route_name in self.burst_routes

    def take_forced_ending(self) -> Ending | None:
        """The ending a knob forces on this create, if any; consumes one from that knob's countdown."""
        if self.ending_sample_next > 0:
            self.ending_sample_next -= 1
            return "sample"
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


class GeminiConfig(RuntimeConfig):
    """The shared runtime config (`GET`/`PATCH /_sim/config`) and the base of sample URIs, which has no setting."""

    # Scheme://host[:port] put in front of sample URIs; None uses the base URL of the request at hand.
    public_base_url: str | None = None
