"""The one settings object of Video Gateway.

Read once by a CLI entry point (`get_settings()`), then passed down to `create_app`, the worker and the
simulator. Nothing else reads `os.environ`. Every variable carries the `VG_` prefix; groups nest with `__`
(`VG_UPSTREAM__BASE_URL`). Every secret may instead be given as a file: `VG_UPSTREAM__API_KEY_FILE=/run/...`.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "VG_"
# The profile name of `Settings.upstream` among the upstream profiles.
DEFAULT_PROFILE = "default"
NESTED_DELIMITER = "__"
FILE_SUFFIX = "_FILE"
# Upstream keys that only the simulator accepts: refused outside dev mode.
PLACEHOLDER_KEYS = frozenset({"", "sim-key"})
# The models of OpenAI's Videos API: what the default profile serves unless told otherwise.
OPENAI_MODELS = ("sora-2", "sora-2-pro")
# In the default profile's `models`: every model that no other profile lists (pass-through).
ANY_MODEL = "*"
# In dev mode callbacks may also go to this machine's loopback (`make run`'s receiver, a script on the laptop).
DEV_LOOPBACK_DESTINATIONS = ("127.0.0.0/8", "::1/128")


def split_secrets(value: SecretStr | None) -> list[str]:
    """One or more secrets in one setting, separated by spaces or commas (rotation keeps two at once)."""
    if value is None:
        return []
    return [part for part in value.get_secret_value().replace(",", " ").split() if part]


class Mode(StrEnum):
    """`dev` unlocks the dev caller key and plain-http redirects; `production` refuses placeholders."""

    DEV = "dev"
    PRODUCTION = "production"


class DatabaseSettings(BaseModel):
    url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/video_gateway")
    # Connections kept open per process. A request holds one only while its statements run; past this many at
    # once a request waits for one to come back (a 503 after 30 s). Overflow connections are opened and closed
    # again per use, a new Postgres backend every time: under load that churn, not the queries, was what ingest
    # throughput collapsed on (halved from 16 concurrent deliveries to 32 with 20 + 10), so the default is none.
    pool_size: int = Field(default=20, ge=1)
    max_overflow: int = Field(default=0, ge=0)
    echo: bool = False


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # OpenAI allows an image_url of up to 20,971,520 chars; a multipart image of that size plus fields fits.
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # Largest accepted input_reference image, decoded.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Largest uploaded MP4 (an edit's or extension's source, a character's clip). The whole request must also
    # fit `max_request_bytes`: raise both together.
    max_video_bytes: int = Field(default=24 * 1024 * 1024, ge=1024)
    # A retrieve of a non-terminal video refreshes from upstream at most this often per video.
    refresh_min_interval_seconds: float = Field(default=2.0, ge=0)
    list_default_limit: int = Field(default=20, ge=1, le=100)
    # The listener of `video-gateway serve` (app/core/server.py). Connections plus requests in progress past
    # this many are answered 503 at once: memory and file descriptors stay bounded whoever connects.
    limit_concurrency: int = Field(default=1000, ge=1)
    # An idle kept-alive connection is closed after this long. An ingress must close its idle upstream
    # connections sooner (or this must be raised above its idle timeout), or it may reuse one being closed.
    keep_alive_timeout_seconds: int = Field(default=5, ge=1)
    # A request's head (request line and headers) must arrive whole within this long of the connection opening,
    # or of the request's first byte on a kept-alive one; slower senders are cut off (uvicorn has no such
    # timeout of its own). The body is not covered: large uploads on slow links stay possible.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # A head larger than this is refused with 431 and the connection closed.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # An https `input_reference.image_url` is fetched by the gateway itself (app/upstream/image_url.py), through
    # the callbacks' destination guard: public addresses are reached; private, loopback, link-local and the
    # like only when listed here (exact host names or CIDRs); cloud metadata never.
    image_url_allowed_destinations: list[str] = Field(default_factory=list)
    # The whole fetch (resolve, connect, TLS, headers, body) must end within this long.
    image_url_timeout_seconds: float = Field(default=10.0, gt=0)


# What an upstream profile speaks: `openai` (OpenAI's `/v1/videos` contract: a proxy or compatible provider)
# or a live provider's own API through its adapter (app/upstream). Chosen once per profile, at start.
ProviderKind = Literal["openai", "gemini", "seedance", "fal", "replicate"]


class UpstreamSettings(BaseModel):
    kind: ProviderKind = "openai"
    # `openai`: the contract's base URL, `/v1` included; `gemini`: the API's host, e.g.
    # https://generativelanguage.googleapis.com (the adapter adds `/v1beta/...`).
    base_url: str = "http://127.0.0.1:8100/v1"
    api_key: SecretStr = SecretStr("sim-key")
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Only retries that cannot create a second render: 429 and connection refused.
    create_attempts: int = Field(default=3, ge=1)
    # Reads (retrieve, list, content) may also be retried on 5xx and timeouts.
    read_attempts: int = Field(default=3, ge=1)
    retry_base_seconds: float = Field(default=0.5, ge=0)
    retry_max_seconds: float = Field(default=8.0, ge=0)
    # Content downloads may be redirected (the contract's docs use `curl -L`) only to these hosts (the
    # upstream's own host is always allowed), over https unless in dev mode, at most 3 hops.
    content_redirect_hosts: list[str] = Field(default_factory=list)
    # Circuit breaker: after this many consecutive failures (5xx, timeouts, refused), calls fail fast for
    # the cool-down instead of piling onto a provider that is down.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, ge=0)
    # How long the provider keeps a finished video when its answers do not say (Gemini: 2 days). Unset: the
    # kind's documented retention. The archive's download deadline is computed from it.
    retention_seconds: float | None = Field(default=None, gt=0)
    # The models this profile renders. For the default profile (`VG_UPSTREAM__MODELS`): OpenAI's; a create for
    # a model no profile lists is a 400 naming `model`, before it is charged (an unknown model would be charged
    # the highest price) or sent. `["*"]` makes the default profile take every model no other profile lists
    # (the pass-through of an upstream whose models the gateway cannot know).
    models: list[str] = Field(default_factory=lambda: list(OPENAI_MODELS))
    # A pooled connection idle this long is not reused. Below the server's own keep-alive timeout (uvicorn's
    # is 5 s), so we never send a paid create down a connection the server is closing: that ends as a
    # ReadError after the request may have left, which the gateway must answer 502 and never repeat.
    keepalive_expiry_seconds: float = Field(default=2.0, ge=0)
    # Our receiver's public URL for this profile (`https://…/webhooks/{profile name}`), sent with each create
    # to providers that take a webhook per request (fal's `fal_webhook`, Replicate's `webhook`, Seedance's
    # `callback_url`). Unset: none is asked for, and the reconciler's polls alone finish the renders.
    webhook_url: str | None = None
    # fal signs its webhooks with Ed25519 keys published here (JWKS); fetched when first needed, cached, and
    # fetched again at most once per unknown key id (never per delivery).
    webhook_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    # Admission control (app/archive/admission.py), on when `max_rpm` or `max_concurrent` is set: creates beyond
    # the provider's limits are accepted as `queued` and submitted by the worker as capacity frees, in arrival
    # order; none of them meets a provider 429. `max_rpm`: creates sent per `rate_window_seconds`;
    # `max_concurrent`: renders in flight (sent and not finished). Unset both: every create goes upstream at once.
    max_rpm: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    # Creates waiting for submission at most; beyond it a create is refused 429 with a Retry-After.
    max_backlog: int = Field(default=1000, ge=1)
    # The window `max_rpm` counts in: a minute, as providers count. Shorter only to run a minute's behaviour in
    # seconds (tests, benchmarks).
    rate_window_seconds: float = Field(default=60.0, gt=0)

    @property
    def admission_controlled(self) -> bool:
        """Whether creates on this profile wait for capacity (see `max_rpm`, `max_concurrent`)."""
        return self.max_rpm is not None or self.max_concurrent is not None


class UpstreamProfile(UpstreamSettings):
    """A further upstream (provider or proxy) speaking the same contract, for the models it serves."""

    # Exact names only: the wildcard `*` belongs to the default profile (`VG_UPSTREAM__MODELS`).
    models: list[str] = Field(default_factory=list)
    # False for providers that send no webhooks: the reconciler alone archives their videos.
    sends_webhooks: bool = True
    # One or more `whsec_` secrets for this provider's webhooks, received at `/webhooks/{profile name}`.
    webhook_secrets: SecretStr | None = None

    def webhook_secret_list(self) -> list[str]:
        return split_secrets(self.webhook_secrets)

    @field_validator("models")
    @classmethod
    def _exact_model_names(cls, value: list[str]) -> list[str]:
        if ANY_MODEL in value:
            raise ValueError(f"{ANY_MODEL!r} is only for the default profile's models (VG_UPSTREAM__MODELS)")
        return value


class FallbackTarget(BaseModel):
    """One further place to render a model when its own profile cannot take a create (`VG_FALLBACKS`)."""

    model_config = ConfigDict(extra="forbid")

    # A profile name: "default" or a key of `VG_UPSTREAMS`.
    profile: str = Field(min_length=1, max_length=100)
    # The model id that profile's provider knows (fal's endpoint id, Replicate's `owner/name`, ...): what is
    # sent there, and remembered on the video (`videos.upstream_model`, as long as `videos.model`).
    model: str = Field(min_length=1, max_length=100)


class WebhookSettings(BaseModel):
    """The signed webhook receiver (`video.completed` / `video.failed`)."""

    enabled: bool = True
    path: str = "/webhooks/openai"
    # One or more `whsec_` secrets, separated by spaces or commas; several at once during a rotation.
    secrets: SecretStr | None = None
    # Bodies above this are refused with 413 before any HMAC is computed (payloads are ~200 bytes).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    def secret_list(self) -> list[str]:
        return split_secrets(self.secrets)


class WorkerSettings(BaseModel):
    """The archive worker: leases, retries, reconciliation and shutdown."""

    concurrency: int = Field(default=4, ge=1)
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    # Idle workers are woken by a NOTIFY when the API queues work that is due now (app/archive/wakeup.py): a job
    # starts within a round trip instead of up to a poll interval later. Off: polling only (e.g. a connection
    # pooler in transaction mode, which cannot hold a LISTEN).
    wake_on_notify: bool = True
    # A claim is a lease renewed by a heartbeat; another worker takes the job over once it lapses.
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=120.0, ge=0)
    # Deadline of an asset job when upstream gave no expires_at: completion + this.
    deadline_fallback_seconds: float = Field(default=3600.0, gt=0)
    # How long a video that never finishes keeps being polled by the reconciler.
    sync_horizon_seconds: float = Field(default=6 * 3600.0, gt=0)
    reconcile_interval_seconds: float = Field(default=15.0, gt=0)
    # A video still without an upstream id this long after its create was cut off mid-submission (the API
    # died before upstream answered): the reconciler fails it as upstream_submission_unknown, which frees the
    # caller's concurrency slot and sends its callback. Keep it well above the upstream timeout.
    unsubmitted_after_seconds: float = Field(default=900.0, gt=0)
    # Incomplete multipart uploads older than this are aborted by the janitor, which runs in every worker
    # every `janitor_interval_seconds` (and once when it starts).
    stale_upload_seconds: float = Field(default=6 * 3600.0, gt=0)
    janitor_interval_seconds: float = Field(default=600.0, gt=0)
    # Prometheus metrics of the worker on http://0.0.0.0:<port>/metrics; 0 serves none.
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    # The integrity audit (app/archive/audit.py): every `audit_interval_seconds` a worker checks up to
    # `audit_batch_size` archived objects in S3 (a HEAD each: present, with the recorded size), least recently
    # checked first, each again after `audit_recheck_seconds`; 0 objects turns it off. Per worker: N workers
    # check N batches per interval (a batch is claimed, so no object is checked twice).
    audit_interval_seconds: float = Field(default=60.0, gt=0)
    audit_batch_size: int = Field(default=20, ge=0)
    audit_recheck_seconds: float = Field(default=24 * 3600.0, ge=0)


class RetentionSettings(BaseModel):
    """The pruner (app/archive/pruner.py): how long finished rows are kept, and how the rest is deleted.

    One worker at a time (a Postgres advisory lock) runs a pass every `interval_seconds`. A pass deletes, in
    batches of `batch_size` rows, each batch its own short transaction, at most `max_batches_per_pass` batches per
    table, then waits for the next pass:
    - `archive_jobs` in a terminal state (succeeded, failed, expired, dead) that finished more than
      `archive_jobs_days` ago. Queued and running jobs are never deleted, however old.
    - `webhook_events` received more than `webhook_events_days` ago, except orphans (an event no video of ours
      matched yet: the reconciler may still match it), which are kept. These rows are the receiver's dedup
      record: a redelivery of an event whose row is gone is processed again (one more, harmless `sync` of its
      video). Keep this well above the longest redelivery window of any provider (Standard Webhooks senders
      retry for about 3 days): 7 days or more. Smaller values are accepted for tests and soaks only.
    - `callback_attempts` of deliveries that finished (delivered, failed or cancelled) more than
      `callback_attempts_days` ago: a delivery's log is kept whole until then. Pending deliveries' attempts are
      never deleted. The deliveries themselves (the outbox, one row per video, event and URL) are kept.
    Days are fractional (0.5 is 12 hours) and must be above 0; `enabled=false` turns the pruner off.
    """

    enabled: bool = True
    archive_jobs_days: float = Field(default=30.0, gt=0)
    webhook_events_days: float = Field(default=30.0, gt=0)
    callback_attempts_days: float = Field(default=30.0, gt=0)
    # Rows per delete; each batch is one transaction holding row locks on the rows it deletes only.
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # A backlog (the first pass on an old database) is worked off at most this many batches per table per pass.
    max_batches_per_pass: int = Field(default=100, ge=1)
    interval_seconds: float = Field(default=300.0, gt=0)


class S3Settings(BaseModel):
    """Where archived assets go. Any S3 API works; the dev stack and tests use SeaweedFS."""

    endpoint_url: str | None = "http://127.0.0.1:8333"
    region: str = "us-east-1"
    bucket: str = "video-gateway"
    access_key_id: SecretStr = SecretStr("vg-dev-access")
    secret_access_key: SecretStr = SecretStr("vg-dev-secret")
    # Objects are stored at `{prefix}/{video_id}/{variant}.{ext}`.
    prefix: str = "videos"
    # Streaming upload: multipart above one part; memory per transfer is bounded by part size * parts in flight.
    part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    # Presigned URLs (`GET /v1/videos/{id}/assets`): lifetime, and the endpoint readers reach if not ours.
    presign_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    public_endpoint_url: str | None = None
    max_parts_in_flight: int = Field(default=2, ge=1)


class SimulatorSettings(BaseModel):
    """The upstream simulator: a faithful stand-in for the `/v1/videos` contract (tests, bench, demo)."""

    host: str = "127.0.0.1"
    port: int = 8100
    api_key: SecretStr = SecretStr("sim-key")
    # Where video.completed / video.failed go; None sends no webhooks (a provider without webhooks).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: int = Field(default=5, ge=1)
    webhook_retry_base_seconds: float = Field(default=1.0, ge=0)
    # Lifecycle timing: queued for `queue_seconds`, then progress rises over `render_seconds`.
    queue_seconds: float = Field(default=1.0, ge=0)
    render_seconds: float = Field(default=5.0, ge=0)
    # Finished assets are served until completion + ttl_seconds (OpenAI: at most one hour).
    ttl_seconds: float = Field(default=3600.0, ge=0)
    fps: int = Field(default=24, ge=1, le=60)
    # Prompts containing any of these words (case-insensitive) fail with moderation_blocked.
    blocked_words: list[str] = Field(default_factory=lambda: ["forbidden"])
    # Where rendered files live; a temporary directory when unset.
    data_dir: Path | None = None
    # When set, every asset is a synthetic file of this many bytes (valid MP4 header, no encoder time).
    synthetic_asset_bytes: int | None = Field(default=None, ge=0)
    max_parallel_renders: int = Field(default=2, ge=1)
    # A provider's limits (`/_sim/config` changes them at runtime): creates and remixes per
    # `rate_limit_window_seconds`, and videos queued or rendering at once. Past either: 429 in OpenAI's shape,
    # counted as `rate_limited` in `/_sim/stats`. None: no limit.
    rate_limit_rpm: int | None = Field(default=None, ge=1)
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    max_concurrent_renders: int | None = Field(default=None, ge=1)

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _empty_url_means_none(cls, value: object) -> object:
        # `VG_SIMULATOR__WEBHOOK_URL=` (empty) must switch webhooks off, not aim them at "".
        return None if value == "" else value


class DevSettings(BaseModel):
    """`video-gateway dev` (`make run`) only: the ports of what it starts besides the API (`VG_API__PORT`) and
    the simulator (`VG_SIMULATOR__PORT`; the Gemini simulator takes the port after it). Every one is checked
    free before anything starts; change them to run a second stack beside a first."""

    # The callback receiver the demo's `callback_url` points at.
    receiver_port: int = Field(default=8102, ge=1, le=65535)
    # SeaweedFS's S3 API; the stack's processes get `http://127.0.0.1:<this>` as `VG_S3__ENDPOINT_URL`.
    s3_port: int = Field(default=8333, ge=1, le=65535)
    # SeaweedFS's other ports. Unset: weed's own (master 9333, volume 9340, filer 8888, admin 23646), each gRPC
    # port (S3's too) at its HTTP port + 10000. Set: the nine ports base … base + 8 (S3 gRPC, master, master
    # gRPC, volume, volume gRPC, filer, filer gRPC, admin, admin gRPC).
    seaweedfs_port_base: int | None = Field(default=None, ge=1, le=65535 - 8)

    @model_validator(mode="after")
    def _grpc_ports_exist(self) -> DevSettings:
        if self.seaweedfs_port_base is None and self.s3_port + 10000 > 65535:
            raise ValueError(
                f"S3 port {self.s3_port} leaves no room for its gRPC port at + 10000; set VG_DEV__SEAWEEDFS_PORT_BASE"
            )
        base = self.seaweedfs_port_base
        if base is not None and base <= self.s3_port <= base + 8:
            raise ValueError(f"S3 port {self.s3_port} is among SeaweedFS's other ports ({base} … {base + 8})")
        return self


class IdempotencySettings(BaseModel):
    """`Idempotency-Key` on POSTs that start a paid render (owned by app/idempotency)."""

    # How long a stored response answers a repeated key.
    ttl_seconds: float = Field(default=24 * 3600.0, gt=0)


class CallbackSettings(BaseModel):
    """Signed callbacks to internal services (owned by app/callbacks)."""

    # Hosts (exact names) or CIDRs a callback may be delivered to; everything else is refused.
    # Cloud metadata addresses are refused even inside an allowed CIDR.
    allowed_destinations: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=15.0, gt=0)
    # Attempts in all: the first at once, then one after each delay of the schedule (the last delay repeats).
    max_attempts: int = Field(default=8, ge=1)
    # Standard Webhooks' schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0], min_length=1
    )
    # Each delay is stretched by up to this fraction at random, so a recovering receiver is not stampeded.
    retry_jitter_ratio: float = Field(default=0.1, ge=0, le=1)
    # Plain http is accepted only to allow-listed private (non-global) addresses; public ones need https.
    allow_http: bool = True
    # Deliveries claimed (and sent concurrently) per worker tick.
    batch_size: int = Field(default=20, ge=1)
    # After a rotation the previous secret keeps signing (a second signature) for this long.
    secret_rotation_grace_seconds: float = Field(default=24 * 3600.0, ge=0)
    # Standing endpoints (`POST /v1/callbacks/endpoints`) a caller may have at once: every event is sent to
    # each of them, so an unbounded list would multiply the outbox and the sender's work per event.
    max_endpoints_per_caller: int = Field(default=10, ge=1)


class LimitSettings(BaseModel):
    """Per-key request rates, concurrent renders and spend budgets (owned by app/limits)."""

    requests_per_minute: int = Field(default=600, ge=1)
    max_concurrent_renders: int = Field(default=20, ge=1)
    budget_usd_per_period: float = Field(default=100.0, ge=0)
    budget_period: Literal["day", "month"] = "day"
    # A model missing from this table is charged at its highest price (never under-counted); see app/limits.
    prices_usd_per_second: dict[str, float] = Field(default_factory=lambda: {"sora-2": 0.10, "sora-2-pro": 0.30})
    # Retry-After sent with a 429 for too many renders in flight (renders take minutes).
    concurrency_retry_after_seconds: int = Field(default=30, ge=1)

    @field_validator("prices_usd_per_second")
    @classmethod
    def _prices_are_usable(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one model price is needed (unknown models are charged the highest price)")
        if any(price < 0 for price in value.values()):
            raise ValueError("prices cannot be negative")
        return value


class ConsoleSettings(BaseModel):
    """The operator console at `/console` (owned by app/console); it exists only when `admin_api_key` is set."""

    # A signed-in session lasts this long; signing in again is the only way to extend it.
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    # Signs the session cookie and its CSRF token. Unset: derived from the admin key, so changing the admin
    # key also ends every console session. Set it to keep sessions across admin key rotations.
    session_secret: SecretStr | None = None
    # How often the video table refreshes itself in the browser.
    refresh_seconds: float = Field(default=5.0, ge=1)
    page_size: int = Field(default=50, ge=1, le=500)
    # A download whose window closes sooner than this is shown as at risk (as `video-gateway status`).
    at_risk_minutes: int = Field(default=10, ge=1)


class AuthSettings(BaseModel):
    """What authentication may cost (owned by app/auth): the admin-key throttle and the key cache.

    Both live in the memory of each API process: with N replicas an attacker spread over them gets up to N
    times the free failures, and a restart forgets everything (docs/runbooks.md).
    """

    # A refused API key's digest is remembered this long, so repeating it costs no query (0: no cache).
    bad_key_cache_seconds: float = Field(default=30.0, ge=0)
    # How many refused keys, and how many good ones, each process remembers at most.
    bad_key_cache_entries: int = Field(default=10_000, ge=1)
    # A good key's caller and key rows are trusted this long without a query (0: looked up on every request).
    # At most 1 s: the bound on how late a revocation, an expiry or a new limit applies on another replica.
    good_key_cache_seconds: float = Field(default=1.0, ge=0, le=1.0)
    # Wrong admin keys (console sign-in and `/v1/admin/*` share them) from one client address before the first
    # lockout, and from all addresses together before everyone is locked out.
    admin_free_failures_per_address: int = Field(default=10, ge=0)
    admin_free_failures_global: int = Field(default=100, ge=0)
    # Each failure past the free ones locks out for twice as long as the previous one, up to these caps; while
    # locked out even the right key gets 429. The global cap is short: the global lockout also stops the operator.
    admin_first_lockout_seconds: float = Field(default=1.0, gt=0)
    admin_max_lockout_seconds_per_address: float = Field(default=900.0, gt=0)
    admin_max_lockout_seconds_global: float = Field(default=60.0, gt=0)
    # Failures are forgotten after this long without one (a right key also clears its address's failures).
    admin_forget_failures_after_seconds: float = Field(default=3600.0, gt=0)
    # Addresses remembered at most (the oldest are forgotten first), so a spread-out attack costs bounded memory.
    admin_tracked_addresses: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _failures_outlive_lockouts(self) -> AuthSettings:
        # Forgetting failures during a lockout would restart the doubling at every lockout.
        longest = max(self.admin_max_lockout_seconds_per_address, self.admin_max_lockout_seconds_global)
        if self.admin_forget_failures_after_seconds < longest:
            raise ValueError("admin_forget_failures_after_seconds must be at least the longest lockout")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="ignore",
    )

    mode: Mode = Mode.PRODUCTION
    log_level: str = "INFO"
    # `json` (one object per line) or `console` (for people); unset: `console` in dev mode, else `json`.
    log_format: Literal["json", "console"] | None = None
    # The dev caller's key; accepted only in dev mode (see auth).
    dev_api_key: SecretStr = SecretStr("vg-dev-key")
    # `make run` only: which simulated provider renders the demo (`gemini`: Veo through the Gemini simulator).
    demo_provider: Literal["openai", "gemini"] = "openai"

    db: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    # Further named upstreams; a model listed in a profile's `models` is rendered there, others go to
    # `upstream` (the profile named "default"). E.g. VG_UPSTREAMS='{"pro": {"base_url": ..., "models": [...]}}'.
    upstreams: dict[str, UpstreamProfile] = Field(default_factory=dict)
    # Where a create goes when the model's own profile cannot take it (circuit open, throttled by a 429, its
    # line full, refused connection): the profiles to try after it, in order, each with the model id its provider
    # knows. E.g. VG_FALLBACKS='{"veo-3.1-generate-preview": [{"profile": "fal", "model": "fal-ai/veo3.1"}]}'.
    # Checked at start: every profile exists, and its adapter knows the model (app/upstream/router.py).
    fallbacks: dict[str, list[FallbackTarget]] = Field(default_factory=dict)
    s3: S3Settings = S3Settings()
    webhooks: WebhookSettings = WebhookSettings()
    worker: WorkerSettings = WorkerSettings()
    retention: RetentionSettings = RetentionSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    dev: DevSettings = DevSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    callbacks: CallbackSettings = CallbackSettings()
    limits: LimitSettings = LimitSettings()
    # The operator's key for the admin API (callers, keys, limits, callback secrets); unset disables it.
    admin_api_key: SecretStr | None = None
    console: ConsoleSettings = ConsoleSettings()
    auth: AuthSettings = AuthSettings()

    @property
    def is_dev(self) -> bool:
        return self.mode is Mode.DEV

    def upstream_profile(self, name: str) -> UpstreamSettings:
        """The settings of a named upstream profile ("default" is `upstream`); KeyError if not configured."""
        return self.upstream if name == DEFAULT_PROFILE else self.upstreams[name]

    def profile_kinds(self) -> dict[str, str]:
        """Each configured profile's `kind`, by profile name (what usage and the console show beside a profile)."""
        return {DEFAULT_PROFILE: self.upstream.kind, **{name: profile.kind for name, profile in self.upstreams.items()}}

    def models_rendered_by(self, name: str) -> list[str]:
        """The models a profile may render: its own `models`, then those fallbacks send it (what a receiver that
        must know a render's model to find its video, fal's, looks for)."""
        fallback_models = [
            target.model for targets in self.fallbacks.values() for target in targets if target.profile == name
        ]
        return list(dict.fromkeys([*self.upstream_profile(name).models, *fallback_models]))

    @model_validator(mode="after")
    def _fallbacks_name_profiles(self) -> Settings:
        # Only what the settings alone can tell; whether each profile's adapter knows the model is checked when
        # the adapters are built (app/upstream/router.py), as every process does at start.
        profiles = {DEFAULT_PROFILE, *self.upstreams}
        for model, targets in self.fallbacks.items():
            for index, target in enumerate(targets):
                if target.profile not in profiles:
                    raise ValueError(
                        f"VG_FALLBACKS[{model!r}][{index}] names upstream profile {target.profile!r}, which is not "
                        f"configured (profiles: {', '.join(sorted(profiles))})"
                    )
        return self

    @model_validator(mode="after")
    def _dev_allows_loopback_callbacks(self) -> Settings:
        # Dev mode only: production keeps the operator's allow-list exactly as configured (default deny).
        if self.mode is Mode.DEV:
            allowed = self.callbacks.allowed_destinations
            missing = [cidr for cidr in DEV_LOOPBACK_DESTINATIONS if cidr not in allowed]
            if missing:
                self.callbacks = self.callbacks.model_copy(update={"allowed_destinations": [*allowed, *missing]})
        return self

    @model_validator(mode="after")
    def _log_format_by_mode(self) -> Settings:
        if self.log_format is None:
            self.log_format = "console" if self.mode is Mode.DEV else "json"
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.mode is Mode.PRODUCTION and self.upstream.api_key.get_secret_value() in PLACEHOLDER_KEYS:
            raise ValueError("VG_UPSTREAM__API_KEY is unset or a placeholder; set it (or VG_MODE=dev for local use)")
        claimed: dict[str, str] = {}
        for name, profile in self.upstreams.items():
            if name == DEFAULT_PROFILE or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"upstream profile name {name!r} must be a slug other than {DEFAULT_PROFILE!r}")
            if self.mode is Mode.PRODUCTION and profile.api_key.get_secret_value() in PLACEHOLDER_KEYS:
                variable = f"VG_UPSTREAMS__{name.upper().replace('-', '_')}__API_KEY"
                raise ValueError(
                    f"upstream profile {name!r} ({profile.kind}) has no api_key; set it in VG_UPSTREAMS, "
                    f"{variable} or {variable}_FILE"
                )
            for model in profile.models:
                if model in claimed:
                    raise ValueError(f"model {model!r} is routed to both {claimed[model]!r} and {name!r}")
                claimed[model] = name
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then plain env, then `_FILE` env (a value set both ways is taken from env).
        return (init_settings, env_settings, SecretFileSource(settings_cls))


class SecretFileSource(PydanticBaseSettingsSource):
    """`VG_<NAME>_FILE=/path` gives the value of `VG_<NAME>` from a file (Docker and Kubernetes secrets).

    pydantic-settings' own `secrets_dir` reads files named after fields; operators expect the `_FILE`
    convention of the Postgres and other official images, so this small source maps one onto the other.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole nested dict at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, path in os.environ.items():
            if not (name.startswith(ENV_PREFIX) and name.endswith(FILE_SUFFIX)):
                continue
            dotted = name[len(ENV_PREFIX) : -len(FILE_SUFFIX)].lower().split(NESTED_DELIMITER)
            content = Path(path).read_text(encoding="utf-8").strip()
            target = values
            for part in dotted[:-1]:
                target = target.setdefault(part, {})
            target[dotted[-1]] = content
        return values


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (plus explicit overrides, as tests do)."""
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, for CLI entry points only; everything else receives them as an argument."""
    return load_settings()


__all__ = [
    "ApiSettings",
    "AuthSettings",
    "CallbackSettings",
    "ConsoleSettings",
    "DatabaseSettings",
    "DevSettings",
    "FallbackTarget",
    "IdempotencySettings",
    "LimitSettings",
    "Mode",
    "ProviderKind",
    "RetentionSettings",
    "S3Settings",
    "Settings",
    "SimulatorSettings",
    "UpstreamProfile",
    "UpstreamSettings",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
    "load_settings",
]
