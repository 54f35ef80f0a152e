"""Admission control: creates on a profile with provider limits wait for capacity, and go upstream in arrival order.

A profile that declares `max_rpm` and/or `max_concurrent` (app/core/config.py, `UpstreamSettings`) never sends
a create the provider would refuse with a 429. The API accepts such a create as `queued` (the video id is ours
from the start): the row (with `submitted_at` NULL: waiting), its input image (`video_inputs`) and a `submit`
job commit together, or not at all. The worker's `submit` job (`app.archive.jobs.run_submit`) sends it once
it is first of its profile's waiting videos and the profile has room: fewer than `max_concurrent` renders in
flight, fewer than `max_rpm` creates sent within the rate window. Until then the job is handed back without
spending an attempt (`queue.defer`), for about as long as the room takes to free up.

This module owns the policy (what a profile's limits are, how long to wait, what a caller is told when the line
is full) and the bookkeeping of its outcomes; the queries are the repositories' (`app.videos.repository`: the
line and what is in flight; `app.archive.repository`: the admission locks and the waiting inputs) and the queue's.

Never twice: `submitted_at` is committed before the paid call. A job that finds it set without an upstream id
is an earlier attempt whose answer was lost (a crash, a lost lease); it is left to the reconciler, which finds
the render in upstream's list or settles it as `upstream_submission_unknown` (app/archive/submissions.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import lifecycle, queue
from app.archive.repository import ArchiveRepository
from app.core.config import Settings, UpstreamSettings, WorkerSettings
from app.core.errors import RateLimited
from app.models import JobKind, Video, VideoInput
from app.models.video import DELETED_BEFORE_SUBMISSION
from app.upstream.schemas import CreateVideoCommand, ImageInput
from app.videos.repository import VideoRepository

# The provider counts a create when it arrives, we when we stamp it: the window we count in is this much longer
# than `rate_window_seconds`, so the spread in how long requests take to reach the provider (an image upload,
# a new TLS connection) never lets `max_rpm + 1` creates land in the provider's own window.
WINDOW_MARGIN_SECONDS = 1.0
# A profile at `max_concurrent` gets room when a render finishes, which no event here announces: its first
# waiting video looks again after this long (plus up to as much at random, so workers do not look in step).
CONCURRENCY_RECHECK_SECONDS = 0.5
# Videos behind the first one look again once they are likely first, and at least this often: when the line
# moves sooner, the video sent before them wakes the next one (`queue.wake_submit`), so this bounds only how
# long a lost wake-up can cost.
MAX_LINE_WAIT_SECONDS = 60.0
MIN_LINE_WAIT_SECONDS = 0.2
# A render's length, for the Retry-After of a full line when only `max_concurrent` bounds the profile.
ESTIMATED_RENDER_SECONDS = 60.0
MAX_RETRY_AFTER_SECONDS = 3600


class BacklogFull(RateLimited):
    """The profile's line of waiting creates is full: nothing was stored or charged."""

    code = "upstream_backlog_full"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


@dataclass(frozen=True)
class ProfileLimits:
    """A profile's provider limits, as admission control applies them."""

    max_rpm: int | None
    max_concurrent: int | None
    max_backlog: int
    window_seconds: float

    @classmethod
    def of(cls, settings: UpstreamSettings) -> ProfileLimits | None:
        """The limits of an admission-controlled profile; None for a profile on the direct path."""
        if not settings.admission_controlled:
            return None
        return cls(
            max_rpm=settings.max_rpm,
            max_concurrent=settings.max_concurrent,
            max_backlog=settings.max_backlog,
            window_seconds=settings.rate_window_seconds,
        )

    @property
    def counted_window_seconds(self) -> float:
        return self.window_seconds + WINDOW_MARGIN_SECONDS

    @property
    def slot_seconds(self) -> float:
        """About how long the line takes to move by one at full capacity."""
        if self.max_rpm is not None:
            return self.counted_window_seconds / self.max_rpm
        return CONCURRENCY_RECHECK_SECONDS


@dataclass(frozen=True)
class Capacity:
    """What the gate sees for one waiting video: its place in line and its profile's use of the limits."""

    ahead: int  # waiting videos of the profile that arrived before it
    in_flight: int
    # Seconds since each of the profile's latest `max_rpm` submissions within the counted window, newest first.
    recent_ages: Sequence[float]


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str


# ----- pure policy --------------------------------------------------------------------------------


def backlog_retry_after(waiting: int, limits: ProfileLimits) -> int:
    """Seconds until a full line has drained: at `max_rpm`, `waiting` creates take waiting x window / rpm; with
    only `max_concurrent`, a bounded estimate from a typical render's length."""
    if limits.max_rpm is not None:
        seconds = waiting * limits.counted_window_seconds / limits.max_rpm
    else:
        assert limits.max_concurrent is not None
        seconds = math.ceil(waiting / limits.max_concurrent) * ESTIMATED_RENDER_SECONDS
    return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(seconds)))


def window_wait(recent_ages: Sequence[float], limits: ProfileLimits) -> float:
    """Seconds until the rate window has room for one more create (0: room now).

    `recent_ages` holds the latest submissions within the window, newest first; when `max_rpm` of them are
    there, room opens as the oldest of those leaves the window.
    """
    if limits.max_rpm is None or len(recent_ages) < limits.max_rpm:
        return 0.0
    return max(0.0, limits.counted_window_seconds - recent_ages[limits.max_rpm - 1])


def line_wait(ahead: int, limits: ProfileLimits) -> float:
    """How long a video with `ahead` videos in front of it waits before it looks again: about until it is first."""
    return min(MAX_LINE_WAIT_SECONDS, max(MIN_LINE_WAIT_SECONDS, ahead * limits.slot_seconds))


def concurrency_wait() -> float:
    return CONCURRENCY_RECHECK_SECONDS * (1 + random.random())


def verdict(capacity: Capacity, limits: ProfileLimits) -> Wait | None:
    """None when the video may go upstream now; else how long to wait, and why (the job's note)."""
    if capacity.ahead > 0:
        return Wait(line_wait(capacity.ahead, limits), f"waiting: {capacity.ahead} ahead in line")
    if limits.max_concurrent is not None and capacity.in_flight >= limits.max_concurrent:
        return Wait(
            concurrency_wait(), f"waiting: {capacity.in_flight} renders in flight (max {limits.max_concurrent})"
        )
    wait = window_wait(capacity.recent_ages, limits)
    if wait > 0:
        # A hair past the moment the window frees, so the look finds it free.
        return Wait(wait + 0.05, f"waiting: {limits.max_rpm} creates sent within {limits.window_seconds:g}s")
    return None


def not_to_submit(video: Video | None) -> str | None:
    """Why a `submit` job has nothing to send (its note), or None when the video still waits to be sent."""
    if video is None:
        return "no such video"
    if video.deleted_at is not None:
        return "deleted before it was sent upstream"
    if video.upstream_id is not None:
        return "already sent upstream"
    if video.submitted_at is not None:
        # Sent once with no answer recorded: sending again could render (and bill) it twice.
        return "an earlier attempt may have reached upstream; left to the reconciler, never sent twice"
    if video.status.is_terminal:
        return f"already {video.status}"
    return None


def is_waiting(video: Video) -> bool:
    return not_to_submit(video) is None


def command_for(video: Video, image: VideoInput | None) -> CreateVideoCommand:
    """The upstream create of a waiting video, as it was accepted (an image URL was fetched at acceptance), under
    the model id of the profile it was accepted for (a fallback's may differ from the caller's)."""
    return CreateVideoCommand(
        prompt=video.prompt,
        model=video.provider_model,
        seconds=video.seconds,
        size=video.size,
        image=None
        if image is None
        else ImageInput(
            data=image.image,
            content_type=image.content_type,
            filename=image.filename,
            width=image.width,
            height=image.height,
        ),
        reference=video.id,
    )


# ----- acceptance (the API) -----------------------------------------------------------------------


async def check_backlog(session: AsyncSession, *, profile: str, limits: ProfileLimits, model: str) -> None:
    """429 when the profile's line is full; otherwise the line stays locked for this transaction, so concurrent
    creates cannot all take its last place."""
    await ArchiveRepository.from_session(session).lock_admission_backlog(profile)
    waiting = await VideoRepository.from_session(session).waiting_count(profile)
    if waiting >= limits.max_backlog:
        retry_after = backlog_retry_after(waiting, limits)
        raise BacklogFull(
            f"Too many videos are waiting to be rendered with model '{model}': {waiting} are queued ahead "
            f"(at most {limits.max_backlog}). Nothing was created or charged; please try again in {retry_after}s.",
            retry_after_seconds=retry_after,
        )


async def enqueue_submit(session: AsyncSession, *, video_id: str, settings: WorkerSettings) -> int | None:
    """Queue the `submit` job of a waiting video (None when it has a live one already)."""
    return await queue.enqueue(
        session,
        kind=JobKind.SUBMIT,
        video_id=video_id,
        # No deadline: how long a video may wait is bounded by `max_backlog`, not by the queue.
        deadline=None,
        max_attempts=settings.max_attempts,
    )


# ----- outcomes (the worker) ----------------------------------------------------------------------


async def fail_unsent(
    session: AsyncSession, *, video: Video, code: str, message: str, settings: Settings, notify: bool = True
) -> None:
    """A waiting video that will never render: failed (so neither billed nor counted in flight), its image
    dropped, and its caller told through `video.failed` like any failed render."""
    await lifecycle.fail(session, video, code=code, message=message, settings=settings, notify=notify)
    await ArchiveRepository.from_session(session).drop_video_input(video.id)


async def cancel_waiting(session: AsyncSession, *, video: Video, settings: Settings) -> None:
    """The caller deleted a video before it was sent: it never renders, and is never billed. Failed with
    `deleted_before_submission` (so neither billed nor counted in flight); no callback, since the caller who
    deleted it is the one who would be told."""
    await lifecycle.fail(
        session,
        video,
        code=DELETED_BEFORE_SUBMISSION,
        message="Deleted before it was sent upstream; it was never rendered.",
        settings=settings,
        notify=False,
    )
    await ArchiveRepository.from_session(session).drop_video_input(video.id)
    # Its job finds it deleted and ends; the video behind it need not wait for that.
    if (next_id := await VideoRepository.from_session(session).oldest_waiting(video.upstream_profile)) is not None:
        await queue.wake_submit(session, video_id=next_id)
