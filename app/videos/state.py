"""Folding upstream's view of a video into our row: one rule for polls, webhooks and the reconciler.

Webhooks are unordered and polls race them, so the status only moves forward: queued → in_progress →
completed | failed, and a terminal status never changes again.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from app.models import Video, VideoStatus
from app.upstream.schemas import UpstreamVideo

logger = logging.getLogger(__name__)

# A create that may have reached upstream but whose answer we never got: kept failed, never re-sent blindly.
SUBMISSION_UNKNOWN = "upstream_submission_unknown"

STATUS_RANK = {
    VideoStatus.QUEUED: 0,
    VideoStatus.IN_PROGRESS: 1,
    VideoStatus.COMPLETED: 2,
    VideoStatus.FAILED: 2,
}


# Providers that report no progress (most live ones) get one synthesized from the time since the create:
# it rises quickly at first and approaches, never reaches, the ceiling, so it only ever moves forward and
# never claims a finished render. TIME_CONSTANT is about a typical render's length.
SYNTHETIC_CEILING = 95
SYNTHETIC_TIME_CONSTANT_SECONDS = 60.0


def synthesized_progress(video: Video, *, now: datetime) -> int:
    # From when upstream got the render: a create that waited its turn (admission control) starts at 0.
    started = video.submitted_at or video.created_at
    elapsed = max((now - started).total_seconds(), 0.0) if started is not None else 0.0
    return int(SYNTHETIC_CEILING * (1 - math.exp(-elapsed / SYNTHETIC_TIME_CONSTANT_SECONDS)))


def _from_unix(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def apply_upstream_state(video: Video, upstream: UpstreamVideo, *, now: datetime) -> VideoStatus:
    """Copy upstream's view onto our row, never moving a video backwards (webhooks and polls race).

    Returns the status the video had before, so callers can act on a transition exactly once.
    """
    video.refreshed_at = now
    current = video.video_status
    try:
        incoming = VideoStatus(upstream.status)
    except ValueError:
        logger.warning("upstream reported unknown status %r for %s", upstream.status, video.id)
        return current
    if current.is_terminal:
        # Settled once: a later answer (a provider that re-dates its "done" on every poll) changes nothing.
        return current
    if STATUS_RANK[incoming] < STATUS_RANK[current]:
        return current
    video.status = incoming.value
    reported = upstream.progress
    if reported is None and incoming is VideoStatus.IN_PROGRESS:
        reported = synthesized_progress(video, now=now)
    video.progress = 100 if incoming is VideoStatus.COMPLETED else max(video.progress, reported or 0)
    video.completed_at = _from_unix(upstream.completed_at) or video.completed_at
    video.expires_at = _from_unix(upstream.expires_at) or video.expires_at
    if incoming is VideoStatus.FAILED:
        error = upstream.error
        video.error_code = (error.code if error else None) or "upstream_failed"
        video.error_message = (error.message if error else None) or "The render failed upstream."
    return current


UPSTREAM_NOT_FOUND = "upstream_not_found"


def fail_unknown_submission(video: Video, *, message: str) -> None:
    """Settle a video whose create may or may not have reached upstream: failed, with the code that says so."""
    video.status = VideoStatus.FAILED.value
    video.error_code = SUBMISSION_UNKNOWN
    video.error_message = message


def fail_gone_upstream(video: Video) -> None:
    """Settle a video upstream answers 404 for before it finished here: failed, `upstream_not_found`."""
    video.status = VideoStatus.FAILED.value
    video.error_code = UPSTREAM_NOT_FOUND
    video.error_message = "Upstream no longer knows this video."
