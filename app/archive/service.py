"""Archive bookkeeping shared by the webhook receiver, the facade, the reconciler, the audit and the operators.

These functions only write rows on the caller's session (so they join its transaction): asset rows and
queued jobs. The work itself happens in the worker (`app.archive.jobs`). `replay` and `ask_upstream` also
read the video upstream, to know whether a download can still succeed before anything is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import lifecycle, queue
from app.archive.repository import ArchiveRepository
from app.callbacks import service as callbacks_service
from app.callbacks.service import CallbackEvent
from app.core.config import Settings, WorkerSettings
from app.core.errors import GatewayError, ResourceNotFound
from app.models import AssetState, JobKind, Variant, Video, VideoStatus
from app.models.video import SUBMISSION_UNKNOWN, UPSTREAM_NOT_FOUND
from app.upstream.capabilities import ALL_VARIANTS, served_variants
from app.upstream.router import UnknownProfile, UpstreamRouter
from app.upstream.schemas import UpstreamVideo
from app.videos.repository import VideoRepository


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


async def schedule_downloads(
    session: AsyncSession, *, video: Video, settings: Settings, report_settled: bool = True
) -> int:
    """For a completed video: one asset row per variant, and a job for each one not yet archived.

    A variant the provider serves is downloaded before the provider's window closes (the job's deadline); a
    derived one (app/archive/derive.py) is queued only once the MP4 is archived, with no deadline since it
    reads our own copy, and settles as the MP4 did if the MP4 could not be archived. Idempotent: asset rows
    are created once, and the queue's unique index keeps one live job per asset. Returns how many jobs were
    newly queued.
    """
    if video.status is not VideoStatus.COMPLETED:
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
            if mp4_state in (AssetState.FAILED.value, AssetState.EXPIRED.value, AssetState.LOST.value):
                # Lost is the audit's verdict on an object it checked: an image never made is failed.
                settled_as = AssetState.FAILED.value if mp4_state == AssetState.LOST.value else mp4_state
                await repository.set_asset(
                    video.id, asset.variant, state=settled_as, error="made from the MP4, which was not archived"
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
    if settled and report_settled:
        await after_asset_outcome(session, video_id=video.id, settings=settings)
    return queued


async def settle_download_outcome(session: AsyncSession, *, video_id: str, settings: Settings) -> None:
    """After a download ended for good (its job gave up, or maintenance expired or dead-lettered it): the
    images made from an MP4 that could not be archived settle with it, then the video's outcome is reported
    (once, and only when every variant is settled)."""
    video = await VideoRepository.from_session(session).get(video_id)
    if video is not None and derived_variants(video, settings):
        await schedule_downloads(session, video=video, settings=settings, report_settled=False)
    await after_asset_outcome(session, video_id=video_id, settings=settings)


async def record_upstream_state(
    session: AsyncSession, *, video: Video, upstream: UpstreamVideo, settings: Settings
) -> None:
    """Fold upstream's view into the video and act on a new terminal state in the same transaction:
    a completion queues the downloads, a failure tells the caller (`lifecycle.apply_upstream`)."""
    await lifecycle.apply_upstream(session, video, upstream, settings=settings)
    if video.status is VideoStatus.COMPLETED:
        await schedule_downloads(session, video=video, settings=settings)


CUT_OFF_SUBMISSION = (
    "The gateway stopped before upstream answered this create; it may have started upstream. "
    "Check with the provider before submitting it again."
)


async def settle_unknown_submission(
    session: AsyncSession, *, video: Video, settings: Settings, message: str = CUT_OFF_SUBMISSION
) -> None:
    """A create whose outcome upstream never told us: failed as `upstream_submission_unknown` (kept billable,
    never re-sent), and the caller told through its callback like any failure."""
    await lifecycle.fail(session, video, code=SUBMISSION_UNKNOWN, message=message, settings=settings)


async def settle_gone_upstream(session: AsyncSession, *, video: Video, settings: Settings) -> None:
    """A video upstream no longer knows (404) before it finished here: failed `upstream_not_found`, and the
    caller told through its callback like every other failure. A video that finished already stays as it is."""
    await lifecycle.fail(
        session, video, code=UPSTREAM_NOT_FOUND, message="Upstream no longer knows this video.", settings=settings
    )


async def after_asset_outcome(session: AsyncSession, *, video_id: str, settings: Settings) -> set[AssetState]:
    """Once every variant is settled: `video.archived` if all are archived, else `video.archive_failed`.
    Returns the states of the video's assets as judged.

    Judged under the video's outcome lock (`ArchiveRepository.lock_video_outcomes`), held until the transaction
    ends: the caller has written its assets already, so the last transaction to settle a variant sees them all.
    """
    repository = ArchiveRepository.from_session(session)
    await repository.lock_video_outcomes(video_id)
    states = {asset.state for asset in await repository.assets_of(video_id)}
    if not states or states & {AssetState.PENDING.value, AssetState.DOWNLOADING.value}:
        return states
    video = await VideoRepository.from_session(session).get(video_id)
    if video is None:
        return states
    event = CallbackEvent.ARCHIVED if states == {AssetState.ARCHIVED.value} else CallbackEvent.ARCHIVE_FAILED
    await callbacks_service.on_video_event(session, video=video, event=event, settings=settings.callbacks)
    return states


@dataclass(frozen=True)
class UpstreamVerdict:
    """Whether upstream still serves a video's files: True (until `deadline`), False, or None (could not ask)."""

    serves: bool | None
    reason: str
    deadline: datetime | None = None


async def ask_upstream(
    upstreams: UpstreamRouter, *, video: Video, settings: WorkerSettings, margin_seconds: float = 0.0
) -> UpstreamVerdict:
    """Read the video upstream now: does it still serve its files, for at least `margin_seconds`?

    Served means completed with its window (`expires_at`) still open; a provider that gives no `expires_at`
    serves it until completion + `deadline_fallback_seconds` counted from now, the deadline of the download.
    """
    if video.upstream_id is None:
        return UpstreamVerdict(False, "the video never reached upstream")
    try:
        upstream = await upstreams.adapter(video.upstream_profile).retrieve_video(video.upstream_id)
    except ResourceNotFound:
        return UpstreamVerdict(False, "upstream answered 404 for the video")
    except UnknownProfile:
        return UpstreamVerdict(None, f"its upstream profile {video.upstream_profile!r} is not configured")
    except GatewayError as exc:
        return UpstreamVerdict(None, f"upstream could not be asked: {exc.message}")
    now = datetime.now(UTC)
    if upstream.status != VideoStatus.COMPLETED.value:
        return UpstreamVerdict(False, f"upstream says the video is {upstream.status}")
    if upstream.expires_at is None:
        deadline = now + timedelta(seconds=settings.deadline_fallback_seconds)
        return UpstreamVerdict(True, "upstream serves it (no expiry given)", deadline)
    deadline = datetime.fromtimestamp(upstream.expires_at, UTC)
    if deadline <= now + timedelta(seconds=margin_seconds):
        return UpstreamVerdict(False, f"its window upstream closed at {deadline.isoformat(timespec='seconds')}")
    return UpstreamVerdict(True, f"upstream serves it until {deadline.isoformat(timespec='seconds')}", deadline)


class ReplayResult(StrEnum):
    QUEUED = "queued"
    NOT_COMPLETED = "not_completed"  # unknown, deleted, or not completed: nothing to archive
    UPSTREAM_GONE = "upstream_gone"  # upstream no longer serves the files: nothing changed
    UPSTREAM_UNREACHABLE = "upstream_unreachable"  # upstream could not be asked: nothing changed
    IN_FLIGHT = "in_flight"  # every download it would queue is queued or running already


@dataclass(frozen=True)
class ReplayOutcome:
    result: ReplayResult
    queued: int = 0
    served: int = 0  # variants archived, and so served, as the replay left them
    reason: str | None = None


async def replay(
    session: AsyncSession,
    *,
    video_id: str,
    settings: Settings,
    upstreams: UpstreamRouter,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ReplayOutcome:
    """Re-archive a completed video: download again what upstream still serves, never discarding a good copy.

    Upstream is asked first. If it no longer serves the video (404, or its window closed), nothing changes:
    whatever is archived stays archived and served, and the outcome says why. Otherwise every variant the
    provider serves gets a download with upstream's deadline: an archived one stays archived (and served)
    while the download is pending, and keeps its copy if the download fails (`app.archive.jobs`); a variant
    not archived (failed, expired, lost) goes back to pending. Variants derived from the MP4 are made again
    only if not archived (they are made from our own copy). Keys are deterministic, so a new copy replaces
    the old one in one step, and only once it is whole. `on_progress(done, total)` hears of each variant as it
    is queued, once upstream said yes (the CLI's progress display).
    """
    repository = ArchiveRepository.from_session(session)
    video = await VideoRepository.from_session(session).get(video_id)
    if (
        video is None
        or video.deleted_at is not None
        or video.status is not VideoStatus.COMPLETED
        or video.upstream_id is None
    ):
        return ReplayOutcome(ReplayResult.NOT_COMPLETED)
    served = sum(asset.state == AssetState.ARCHIVED.value for asset in await repository.assets_of(video_id))
    verdict = await ask_upstream(upstreams, video=video, settings=settings.worker)
    if verdict.serves is None:
        return ReplayOutcome(ReplayResult.UPSTREAM_UNREACHABLE, served=served, reason=verdict.reason)
    if not verdict.serves:
        return ReplayOutcome(ReplayResult.UPSTREAM_GONE, served=served, reason=verdict.reason)
    await repository.ensure_assets(video_id)
    derived = derived_variants(video, settings)
    queued = 0
    assets = await repository.assets_of(video_id)
    for index, asset in enumerate(assets):
        if on_progress is not None:
            on_progress(index, len(assets))
        if asset.state != AssetState.ARCHIVED.value:
            await repository.set_asset(video_id, asset.variant, state=AssetState.PENDING.value, error=None)
        if asset.variant in derived:
            continue  # queued below, once the MP4 is archived
        job_id = await queue.enqueue(
            session,
            kind=JobKind.DOWNLOAD,
            video_id=video_id,
            variant=asset.variant,
            deadline=verdict.deadline,
            max_attempts=settings.worker.max_attempts,
        )
        queued += job_id is not None
    queued += await schedule_downloads(session, video=video, settings=settings)
    if on_progress is not None:
        on_progress(len(assets), len(assets))
    return ReplayOutcome(
        ReplayResult.QUEUED if queued else ReplayResult.IN_FLIGHT, queued=queued, served=served, reason=verdict.reason
    )


async def request_audit(session: AsyncSession, *, video_id: str, variant: Variant) -> None:
    """Have the integrity audit check this asset's object first thing (e.g. serving found it missing in S3)."""
    await ArchiveRepository.from_session(session).stamp_audited(video_id, variant.value, checked=False)
