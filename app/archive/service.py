"""Archive bookkeeping shared by the webhook receiver, the facade and the reconciler.

These functions only write rows on the caller's session (so they join its transaction): asset rows and
queued jobs. The work itself happens in the worker (`app.archive.jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import queue
from app.archive.repository import ArchiveRepository
from app.callbacks import service as callbacks_service
from app.callbacks.service import CallbackEvent
from app.core.config import Settings, WorkerSettings
from app.models import Asset, AssetState, JobKind, Variant, Video, VideoStatus
from app.upstream.capabilities import ALL_VARIANTS, served_variants
from app.upstream.schemas import UpstreamVideo
from app.videos.state import apply_upstream_state, fail_unknown_submission


def download_deadline(video: Video, settings: WorkerSettings) -> datetime:
    """The asset window: upstream's `expires_at`, else completion (or now) + the fallback."""
    if video.expires_at is not None:
        return video.expires_at
    finished = video.completed_at or datetime.now(UTC)
    return finished + timedelta(seconds=settings.deadline_fallback_seconds)


def sync_deadline(video: Video, settings: WorkerSettings) -> datetime:
    return video.created_at + timedelta(seconds=settings.sync_horizon_seconds)


async def enqueue_sync(
    session: AsyncSession, *, video: Video, settings: WorkerSettings, delay_seconds: float = 0.0
) -> int | None:
    """Queue a re-read of the video upstream (webhook, reconciler); None if one is already queued or running."""
    return await queue.enqueue(
        session,
        kind=JobKind.SYNC,
        video_id=video.id,
        deadline=sync_deadline(video, settings),
        max_attempts=settings.max_attempts,
        delay_seconds=delay_seconds,
    )


def derived_variants(video: Video, settings: Settings) -> frozenset[str]:
    """The variants the video's provider does not serve: the worker makes them from the archived MP4."""
    try:
        kind = settings.upstream_profile(video.upstream_profile).kind
    except KeyError:
        return frozenset()  # a profile no longer configured: nothing known to derive
    return ALL_VARIANTS - served_variants(kind)


async def schedule_downloads(session: AsyncSession, *, video: Video, settings: Settings) -> int:
    """For a completed video: one asset row per variant, and a job for each one not yet archived.

    A variant the provider serves is downloaded before the provider's window closes (the job's deadline); a
    derived one (app/archive/derive.py) is queued only once the MP4 is archived, with no deadline since it
    reads our own copy, and settles as the MP4 did if the MP4 could not be archived. Idempotent: asset rows
    are created once, and the queue's unique index keeps one live job per asset. Returns how many jobs were
    newly queued.
    """
    if video.video_status is not VideoStatus.COMPLETED:
        return 0
    repository = ArchiveRepository.from_session(session)
    assets = await repository.ensure_assets(video.id)
    derived = derived_variants(video, settings)
    mp4_state = next(asset.state for asset in assets if asset.variant == Variant.VIDEO.value)
    queued = 0
    settled = False
    for asset in assets:
        if not asset.needs_download:
            continue
        deadline: datetime | None = download_deadline(video, settings.worker)
        if asset.variant in derived:
            if mp4_state in (AssetState.FAILED.value, AssetState.EXPIRED.value):
                await repository.set_asset(
                    video.id, asset.variant, state=mp4_state, error="made from the MP4, which was not archived"
                )
                settled = True
                continue
            if mp4_state != AssetState.ARCHIVED.value:
                continue  # queued when the MP4 lands (the download job, or the reconciler)
            deadline = None
        job_id = await queue.enqueue(
            session,
            kind=JobKind.DOWNLOAD,
            video_id=video.id,
            variant=asset.variant,
            deadline=deadline,
            max_attempts=settings.worker.max_attempts,
        )
        queued += job_id is not None
    if settled:
        await after_asset_outcome(session, video_id=video.id, settings=settings)
    return queued


async def record_upstream_state(
    session: AsyncSession, *, video: Video, upstream: UpstreamVideo, settings: Settings
) -> None:
    """Fold upstream's view into the video and act on a new terminal state in the same transaction:
    a completion queues the downloads, a failure tells the caller."""
    before = apply_upstream_state(video, upstream, now=datetime.now(UTC))
    if video.video_status is VideoStatus.COMPLETED:
        await schedule_downloads(session, video=video, settings=settings)
    elif video.video_status is VideoStatus.FAILED and before is not VideoStatus.FAILED:
        await callbacks_service.on_video_event(
            session, video=video, event=CallbackEvent.FAILED, settings=settings.callbacks
        )


CUT_OFF_SUBMISSION = (
    "The gateway stopped before upstream answered this create; it may have started upstream. "
    "Check with the provider before submitting it again."
)


async def settle_unknown_submission(
    session: AsyncSession, *, video: Video, settings: Settings, message: str = CUT_OFF_SUBMISSION
) -> None:
    """A create whose outcome upstream never told us: failed as `upstream_submission_unknown` (kept billable,
    never re-sent), and the caller told through its callback like any failure."""
    fail_unknown_submission(video, message=message)
    await callbacks_service.on_video_event(
        session, video=video, event=CallbackEvent.FAILED, settings=settings.callbacks
    )


async def after_asset_outcome(session: AsyncSession, *, video_id: str, settings: Settings) -> None:
    """Once every variant is settled: `video.archived` if all are archived, else `video.archive_failed`."""
    repository = ArchiveRepository.from_session(session)
    await repository.serialize_outcomes(video_id)
    states = {asset.state for asset in await repository.assets_of(video_id)}
    if not states or states & {AssetState.PENDING.value, AssetState.DOWNLOADING.value}:
        return
    video = await repository.get_video(video_id)
    if video is None:
        return
    event = CallbackEvent.ARCHIVED if states == {AssetState.ARCHIVED.value} else CallbackEvent.ARCHIVE_FAILED
    await callbacks_service.on_video_event(session, video=video, event=event, settings=settings.callbacks)


async def replay(session: AsyncSession, *, video_id: str, settings: Settings) -> int:
    """Re-archive a completed video: every variant back to pending and its downloads queued again.

    Safe at any time: keys are deterministic, so a second copy overwrites the first with the same bytes.
    Returns how many downloads were queued (0 for a video that is not completed, or already in flight).
    """
    repository = ArchiveRepository.from_session(session)
    video = await repository.get_video(video_id)
    if video is None or video.video_status is not VideoStatus.COMPLETED:
        return 0
    for variant in Variant:
        await repository.set_asset(video_id, variant.value, state=AssetState.PENDING.value, error=None)
    return await schedule_downloads(session, video=video, settings=settings)


async def assets_of(session: AsyncSession, *, video_id: str) -> Sequence[Asset]:
    return await ArchiveRepository.from_session(session).assets_of(video_id)


async def archived_asset(session: AsyncSession, *, video_id: str, variant: Variant) -> Asset | None:
    return await ArchiveRepository.from_session(session).archived_asset(video_id, variant)
