"""Fault knobs of the Seedance simulator, and the runtime-tunable part of its configuration.

`SeedanceFaults` mirrors the other simulators' knob names wherever the meaning is the same; all defaults
describe a healthy ModelArk. Tests and benchmarks set knobs through `PUT`/`PATCH /_sim/faults`. Knobs:

Endings (decided when a task is created; counted down, checked in this order, before the prompt markers)
- `ending_video_next` (int): the next N creates succeed with a video, whatever the prompt says.
- `ending_error_next` (int): the next N creates fail with `InternalServiceError`.
- `ending_moderation_next` (int): the next N creates fail after running with
  `OutputVideoSensitiveContentDetected` (Ark's output moderation, which can strike identical inputs at random).
- `ending_expire_next` (int): the next N creates never finish: they end `expired`, as a task does when its
  `execution_expires_after` passes.

Callbacks (unsigned POSTs of the task object; these are `app.simulator.sender.WebhookFaults`)
- `webhook_drop_probability` (0..1) and `webhook_drop_next` (int): callbacks silently not sent.
- `webhook_duplicate` (bool) and `webhook_duplicate_probability` (0..1): a callback is sent twice.
- `webhook_delay_seconds` (float): wait this long before the first attempt of every callback.

API bursts (answered before the route runs; the request is still counted in `/_sim/stats`)
- `rate_limit_next` (int): the next N matching requests answer 429 with `rate_limit_code`.
- `rate_limit_code`: `RateLimitExceeded.EndpointRPMExceeded` (default), `ModelAccountRpmRateLimitExceeded`,
  `QuotaExceeded` or `ServerOverloaded`, the 429 codes Ark is reported to use.
- `server_error_next` (int): the next N matching requests answer `server_error_status`.
- `server_error_status` (500 InternalServiceError | 503 ServiceUnavailable).
- `burst_routes` (list of route names): which routes the bursts hit; empty means every `/api/v3` route. Names:
  `create_task`, `get_task`, `list_tasks`, `delete_task`.
- `model_not_open` (list of model ids): creates for these answer 404 `ModelNotOpen` (the account has not
  activated the model).

Download (the TOS-like file host serving `content.video_url`)
- `content_bytes_per_second` (int): throttle the body to this rate; 0 means unthrottled.
- `content_truncate_after_bytes` (int | None): send only this many bytes while `Content-Length` promises the
  whole file.
- `content_faults_remaining` (int | None): how many more downloads the truncation applies to (counted down);
  None means every one while the knob is set.

Assets
- `synthetic_asset_bytes` (int | None): tasks created while this is set get a synthetic MP4 of N bytes (valid
  `ftyp` box, then padding) instead of an encoded one; overrides the settings value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.simulator.lifecycle import RuntimeConfig
from app.simulator.sender import WebhookFaults

RouteName = Literal["create_task", "get_task", "list_tasks", "delete_task"]
Ending = Literal["video", "error", "moderation", "expire"]
RateLimitCode = Literal[
    "RateLimitExceeded.EndpointRPMExceeded",
    "ModelAccountRpmRateLimitExceeded",
    "QuotaExceeded",
    "ServerOverloaded",
]


class SeedanceFaults(WebhookFaults):
    """Every fault knob; the defaults describe a healthy upstream (see the module docstring)."""

    ending_video_next: int = Field(default=0, ge=0)
    ending_error_next: int = Field(default=0, ge=0)
    ending_moderation_next: int = Field(default=0, ge=0)
    ending_expire_next: int = Field(default=0, ge=0)

    rate_limit_next: int = Field(default=0, ge=0)
    rate_limit_code: RateLimitCode = "RateLimitExceeded.EndpointRPMExceeded"
    server_error_next: int = Field(default=0, ge=0)
    server_error_status: Literal[500, 503] = 500
    burst_routes: list[RouteName] = Field(default_factory=list)
    model_not_open: list[str] = Field(default_factory=list)

    content_bytes_per_second: int = Field(default=0, ge=0)
    content_truncate_after_bytes: int | None = Field(default=None, ge=0)
    content_faults_remaining: int | None = Field(default=None, ge=0)

    synthetic_asset_bytes: int | None = Field(default=None, ge=0)

    def burst_applies_to(self, route_name: str) -> bool:
        return not self.burst_routes or route_name in self.burst_routes

    def take_forced_ending(self) -> Ending | None:
        """The ending a knob forces on this create, if any; consumes one from that knob's countdown."""
        if self.ending_video_next > 0:
            self.ending_video_next -= 1
            return "video"
        if self.ending_error_next > 0:
            self.ending_error_next -= 1
            return "error"
        if self.ending_moderation_next > 0:
            self.ending_moderation_next -= 1
            return "moderation"
        if self.ending_expire_next > 0:
            self.ending_expire_next -= 1
            return "expire"
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


class SeedanceConfig(RuntimeConfig):
    """The shared runtime config (`GET`/`PATCH /_sim/config`) and the base of video URLs.

    `webhook_url`, when set, receives every task's callbacks instead of the task's own `callback_url` (for a
    stack where the address the gateway advertises is not the one the simulator can reach).
    """

    # Scheme://host[:port] of the file host put in `content.video_url`; None uses the request's base URL.
    files_base_url: str | None = None
