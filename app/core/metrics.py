"""Every Prometheus metric of the gateway, and the one-line helpers the code calls to record them.

The metric objects live in the process-wide default registry (one API or one worker per process), so any
module records with a call such as `metrics.archived_bytes(variant, n)` and `/metrics` (API) or the worker's
metrics server renders them all. Label values are always from small fixed sets (route templates, states,
reason codes, profile names from the settings): never ids, paths or messages, which would make a series per
video.

Queue depth is a gauge set from `archive.queue.job_states`: by the `/metrics` handler before it renders
(async, on the request's own session, so no SQL ever runs in a synchronous collector on the event loop),
and by each worker's maintenance tick. Every replica reports the same numbers: aggregate with `max`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

logger = logging.getLogger(__name__)

NAMESPACE: Final = "vg"
# Unmatched paths (404s, scanners) share one label value instead of one series per probed path.
UNMATCHED_ROUTE: Final = "<unmatched>"

# ----- HTTP ---------------------------------------------------------------------------------------

HTTP_REQUEST_SECONDS: Final = Histogram(
    "http_request_duration_seconds",
    "API request latency, by route template (never the raw path) and status class.",
    ["method", "route", "status_class"],
    namespace=NAMESPACE,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

# ----- webhooks -----------------------------------------------------------------------------------

WEBHOOK_DELIVERIES: Final = Counter(
    "webhook_deliveries",
    "Upstream webhook deliveries by outcome (enqueued, duplicate, orphan, ignored, rejected) and, for a "
    "rejection, its reason code.",
    ["profile", "outcome", "reason"],
    namespace=NAMESPACE,
)

# ----- the archive --------------------------------------------------------------------------------

QUEUE_JOBS: Final = Gauge(
    "archive_jobs",
    "Archive jobs by state, read from Postgres at scrape time (API) or on each maintenance tick (worker).",
    ["state"],
    namespace=NAMESPACE,
)

_ARCHIVE_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0, 7200.0)

COMPLETION_TO_ARCHIVED_SECONDS: Final = Histogram(
    "archive_completion_to_archived_seconds",
    "From the video's completion (videos.completed_at) to its last variant in S3.",
    namespace=NAMESPACE,
    buckets=_ARCHIVE_BUCKETS,
)

DEADLINE_SLACK_SECONDS: Final = Histogram(
    "archive_deadline_slack_seconds",
    "Time left before the asset's download window closed (deadline - now) when it landed in S3.",
    ["variant"],
    namespace=NAMESPACE,
    buckets=(0.0, 60.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0, 7200.0),
)

ARCHIVED_BYTES: Final = Counter(
    "archive_bytes",
    "Bytes written to S3 by the archive, by variant.",
    ["variant"],
    namespace=NAMESPACE,
)

# The integrity audit (app/archive/audit.py).
AUDIT_CHECKS: Final = Counter(
    "archive_audit_checks",
    "Archived objects checked by the integrity audit, by result: ok, missing, size_mismatch, checksum_mismatch, "
    "or unreadable (S3 failed; checked again at the next batch).",
    ["result"],
    namespace=NAMESPACE,
)

AUDIT_REPAIRS: Final = Counter(
    "archive_audit_repairs",
    "Archived assets the audit found missing or bad and queued for a new download (upstream still had them, "
    "or the MP4 they are made from is archived).",
    ["variant"],
    namespace=NAMESPACE,
)

ASSETS_LOST: Final = Counter(
    "assets_lost",
    "Archived assets found missing or bad in S3 that upstream no longer has: marked lost. Alert on any increase.",
    ["variant"],
    namespace=NAMESPACE,
)

# ----- outbound -----------------------------------------------------------------------------------

UPSTREAM_ERRORS: Final = Counter(
    "upstream_errors",
    "Failed upstream calls (each attempt), by profile and status: an HTTP status, or timeout, unreachable, "
    "transport, circuit_open, throttled.",
    ["profile", "status"],
    namespace=NAMESPACE,
)

CREATE_FALLBACKS: Final = Counter(
    "create_fallbacks",
    "Creates that passed over a candidate profile and rendered on a later one (VG_FALLBACKS): the profile passed "
    "over, the profile used, and why (unsupported, circuit_open, throttled, rate_limited, backlog_full, "
    "unreachable). One count per profile passed over.",
    ["from", "to", "reason"],
    namespace=NAMESPACE,
)

CALLBACK_ATTEMPTS: Final = Counter(
    "callback_attempts",
    "Callback delivery attempts by outcome, and the delivery state the attempt left (delivered, pending, "
    "failed, lost).",
    ["outcome", "state"],
    namespace=NAMESPACE,
)

PRUNED_ROWS: Final = Counter(
    "pruned_rows",
    "Finished rows the pruner deleted (VG_RETENTION__*), by table: archive_jobs, webhook_events, callback_attempts.",
    ["table"],
    namespace=NAMESPACE,
)

# ----- recording helpers (one line at each call site) ---------------------------------------------


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def http_request(*, method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUEST_SECONDS.labels(method=method, route=route, status_class=status_class(status)).observe(seconds)


def webhook_delivery(*, profile: str, outcome: str, reason: str = "") -> None:
    WEBHOOK_DELIVERIES.labels(profile=profile, outcome=outcome, reason=reason).inc()


def queue_depth(states: dict[str, int], *, known: tuple[str, ...]) -> None:
    """Set every known state (0 when absent from `states`, so a drained state does not keep its last value)."""
    for state in {*known, *states}:
        QUEUE_JOBS.labels(state=state).set(states.get(state, 0))


def archived(*, variant: str, bytes_written: int, deadline_slack_seconds: float | None) -> None:
    ARCHIVED_BYTES.labels(variant=variant).inc(bytes_written)
    if deadline_slack_seconds is not None:
        DEADLINE_SLACK_SECONDS.labels(variant=variant).observe(deadline_slack_seconds)


def video_archived(*, seconds_since_completion: float) -> None:
    COMPLETION_TO_ARCHIVED_SECONDS.observe(max(seconds_since_completion, 0.0))


def audit_check(*, result: str) -> None:
    AUDIT_CHECKS.labels(result=result).inc()


def audit_repair(*, variant: str) -> None:
    AUDIT_REPAIRS.labels(variant=variant).inc()


def asset_lost(*, variant: str) -> None:
    ASSETS_LOST.labels(variant=variant).inc()


def upstream_error(*, profile: str, status: str) -> None:
    UPSTREAM_ERRORS.labels(profile=profile, status=status).inc()


def create_fallback(*, skipped: str, used: str, reason: str) -> None:
    # `from` is a Python keyword: the label is passed by mapping.
    CREATE_FALLBACKS.labels(**{"from": skipped, "to": used, "reason": reason}).inc()


def callback_attempt(*, outcome: str, state: str) -> None:
    CALLBACK_ATTEMPTS.labels(outcome=outcome, state=state).inc()


def pruned(*, table: str, rows: int) -> None:
    PRUNED_ROWS.labels(table=table).inc(rows)


def serve(port: int, *, host: str = "0.0.0.0") -> Callable[[], None] | None:
    """Serve `/metrics` on `port` from a daemon thread (the worker has no web server of its own).

    Returns the function that stops it, or None when `port` is 0 or taken: several workers on one host
    need a port each, and a worker without metrics must still archive.
    """
    if port == 0:
        return None
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        logger.warning("metrics not served: port %d: %s", port, exc.strerror or type(exc).__name__)
        return None
    logger.info("metrics served on %s:%d/metrics", host, server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric of this process, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


__all__ = [
    "UNMATCHED_ROUTE",
    "archived",
    "asset_lost",
    "audit_check",
    "audit_repair",
    "callback_attempt",
    "exposition",
    "http_request",
    "queue_depth",
    "serve",
    "status_class",
    "upstream_error",
    "video_archived",
    "webhook_delivery",
]
