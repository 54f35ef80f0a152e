"""Every status change of a video after its create, and the callback each one queues.

The rules (forward only, a terminal status is final) are the model's (`Video.advance`, `Video.fail` in
app/models/video.py); this module is the one place that calls them, so each transition is seen here once and
tells the caller once: a video that newly fails queues one `video.failed` callback in the same transaction. A
completion queues none here: its callback (`video.archived` or `video.archive_failed`) follows the downloads
(app/archive/service.py). Nothing else in `app/` assigns a video's `status` or `error_code`
(tests/unit/test_video_transitions_owner.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.callbacks import service as callbacks_service
from app.callbacks.service import CallbackEvent
from app.core.config import Settings
from app.models import Video, VideoStatus
from app.upstream.schemas import UpstreamVideo


def _from_unix(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


async def apply_upstream(
    session: AsyncSession,
    video: Video,
    upstream: UpstreamVideo,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> VideoStatus:
    """Fold upstream's view (a poll, a sync, a create's answer) into the video; a new failure tells the caller.

    Returns the status the video had before, so callers can act on other transitions exactly once too.
    """
    error = upstream.error
    before = video.advance(
        upstream.status,
        progress=upstream.progress,
        completed_at=_from_unix(upstream.completed_at),
        expires_at=_from_unix(upstream.expires_at),
        error_code=error.code if error else None,
        error_message=error.message if error else None,
        now=now or datetime.now(UTC),
    )
    if video.status == VideoStatus.FAILED and before is not VideoStatus.FAILED:
        await _tell_failed(session, video, settings=settings)
    return before


async def fail(
    session: AsyncSession,
    video: Video,
    *,
    code: str,
    message: str,
    settings: Settings,
    notify: bool = True,
) -> bool:
    """Fail a video the gateway gives up on, with our own error code; True only when this call failed it.

    A video already completed or failed is left as it was, and nobody is told again. `notify=False` is for a
    failure its caller caused and needs no word of (a waiting video it deleted).
    """
    failed = video.fail(code, message)
    if failed and notify:
        await _tell_failed(session, video, settings=settings)
    return failed


async def _tell_failed(session: AsyncSession, video: Video, *, settings: Settings) -> None:
    await callbacks_service.on_video_event(
        session, video=video, event=CallbackEvent.FAILED, settings=settings.callbacks
    )
