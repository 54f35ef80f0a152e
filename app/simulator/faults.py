"""Fault knobs of the OpenAI simulator.

`Faults` is one flat model with zero defaults: the simulator behaves like a healthy upstream until a test or
a benchmark sets a knob through `PUT`/`PATCH /_sim/faults`. Knobs:

Webhooks (the first five are `app.simulator.sender.WebhookFaults`, shared with the Gemini simulator)
- `webhook_drop_probability` (0..1): each webhook delivery is silently not sent with this probability.
- `webhook_drop_next` (int): the next N deliveries are not sent (counted down; checked before probability).
- `webhook_duplicate` (bool): every delivery is sent twice, with the same `webhook-id`, as a real retry
  storm would (receivers must deduplicate on that header).
- `webhook_duplicate_probability` (0..1): each delivery is sent twice (same `webhook-id`) with this
  probability; `webhook_duplicate` wins when both are set.
- `webhook_delay_seconds` (float): wait this long before the first attempt of every delivery.
- `webhook_reorder_batch` (int): when >= 2, deliveries are held until this many are waiting (or
  `webhook_reorder_window_seconds` has passed since the first was held), then sent newest first.
- `webhook_reorder_window_seconds` (float): the longest a held delivery waits for its batch to fill.

API bursts (answered before the route runs; the request is still counted in `/_sim/stats`)
- `rate_limit_next` (int): the next N matching API requests answer 429 with `retry-after`.
- `rate_limit_retry_after_seconds` (int): the `retry-after` value sent with those 429s.
- `server_error_next` (int): the next N matching API requests answer `server_error_status`.
- `server_error_status` (500 | 502 | 503).
- `burst_routes` (list of route names): which routes the bursts hit; empty means every `/v1` route. Names:
  `create_video`, `list_videos`, `retrieve_video`, `delete_video`, `download_content`, `remix_video`,
  `edit_video`, `extend_video`, `create_character`, `retrieve_character`.

Content (`GET /v1/videos/{id}/content` and the redirect target it may point to)
- `content_bytes_per_second` (int): throttle the body to this rate; 0 means unthrottled.
- `content_truncate_after_bytes` (int | None): send only this many bytes of the body while the
  `Content-Length` header promises the whole file, then end the response (uvicorn then drops the
  connection, so a client sees an incomplete read).
- `content_html_error` (bool): answer 200 `text/html` with an error page instead of the asset.
- `content_faults_remaining` (int | None): how many more content responses the truncation and HTML faults
  apply to (counted down); None means every one while the knob is set.
- `content_redirect` (bool): answer `/content` with a 302 to `/_sim/files/...` (authorised by a token in
  the query string, like a presigned URL, since clients drop `Authorization` on cross-host redirects).
- `content_redirect_host` (str | None): host name to put in the redirect (e.g. `localhost` when the request
  came to `127.0.0.1`); the port and scheme are kept. None keeps the request's host.

Assets
- `synthetic_asset_bytes` (int | None): videos created while this is set get a synthetic MP4 of N bytes
  (valid `ftyp` box, then padding) instead of an encoded one; overrides the settings value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.simulator.sender import WebhookFaults

RouteName = Literal[
    "create_video",
    "list_videos",
    "retrieve_video",
    "delete_video",
    "download_content",
    "remix_video",
    "edit_video",
    "extend_video",
    "create_character",
    "retrieve_character",
]


class Faults(WebhookFaults):
    """Every fault knob; the defaults describe a healthy upstream (see the module docstring)."""

    webhook_reorder_batch: int = Field(default=0, ge=0)
    webhook_reorder_window_seconds: float = Field(default=2.0, ge=0.0)

    rate_limit_next: int = Field(default=0, ge=0)
    rate_limit_retry_after_seconds: int = Field(default=1, ge=0)
    server_error_next: int = Field(default=0, ge=0)
    server_error_status: Literal[500, 502, 503] = 500
    burst_routes: list[RouteName] = Field(default_factory=list)

    content_bytes_per_second: int = Field(default=0, ge=0)
    content_truncate_after_bytes: int | None = Field(default=None, ge=0)
    content_html_error: bool = False
    content_faults_remaining: int | None = Field(default=None, ge=0)
    content_redirect: bool = False
    content_redirect_host: str | None = None

    synthetic_asset_bytes: int | None = Field(default=None, ge=0)

    def burst_applies_to(self, route_name: str) -> bool:
        return not self.burst_routes or route_name in self.burst_routes

    def take_content_fault(self) -> bool:
        """Whether the truncation/HTML faults apply to this response; consumes one from the countdown."""
        if self.content_truncate_after_bytes is None and not self.content_html_error:
            return False
        if self.content_faults_remaining is None:
            return True
        if self.content_faults_remaining == 0:
            return False
        self.content_faults_remaining -= 1
        return True
