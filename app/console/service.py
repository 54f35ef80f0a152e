"""What each console page shows, assembled from the owning domains' repositories (the console has no table of
its own) and their services.

The definitions an operator already knows are reused, not re-derived: "at risk" is the ops CLI's
(`archive.queue.at_risk`, a live download whose window closes within `VG_CONSOLE__AT_RISK_MINUTES`), usage and
spend are `limits.service.usage`, re-archiving is `archive.service.replay` (which asks upstream first and never
takes an archived copy out of service) and a callback retry is `callbacks.service.retry_delivery`. Nothing here
commits: the route's session does, after the page is built.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import queue
from app.archive import service as archive_service
from app.archive.repository import ArchiveRepository
from app.archive.storage import ArchiveStorage
from app.auth import service as auth_service
from app.auth.repository import CallerRepository, KeyRow
from app.callbacks import service as callbacks_service
from app.callbacks.repository import CallbackRepository
from app.console.tap import DeliveryLog, TappedDelivery
from app.core.config import Settings
from app.core.errors import ResourceNotFound
from app.limits import service as limits_service
from app.limits.service import EffectiveLimits, PeriodSpend
from app.models import AssetState, AttemptOutcome, JobState, Variant, Video, VideoStatus, WebhookEvent
from app.upstream.router import UpstreamRouter
from app.videos.repository import Direction, VideoCursor, VideoRepository
from app.webhooks.repository import EventCursor, WebhookRepository

STATUSES: Final = tuple(status.value for status in VideoStatus)
CHART_DAYS: Final = 14
# At-risk jobs read per page: far more than ever exist at once in a healthy system.
AT_RISK_LIMIT: Final = 500


# ----- cursors ------------------------------------------------------------------------------------


def encode_cursor(moment: datetime, row_id: object) -> str:
    raw = f"{moment.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """None for a missing or unreadable cursor: the page then starts from the newest row."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        moment, _, row_id = raw.partition("|")
        parsed = datetime.fromisoformat(moment)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if parsed.tzinfo is None or not row_id:
        return None
    return parsed, row_id


# ----- the video table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFilters:
    status: str | None = None
    caller_id: uuid.UUID | None = None

    @classmethod
    def parse(cls, *, status: str | None, caller: str | None) -> VideoFilters:
        """Unknown values mean "no filter" (a hand-edited URL gets the whole table, not an error page)."""
        try:
            caller_id = uuid.UUID(caller) if caller else None
        except ValueError:
            caller_id = None
        return cls(status=status if status in STATUSES else None, caller_id=caller_id)


@dataclass(frozen=True)
class VideoRow:
    id: str
    caller_name: str
    model: str  # as the caller asked for it
    upstream_profile: str  # the profile that renders it (a fallback's, when the model's own could not)
    provider_kind: str | None  # that profile's kind; None once the profile is no longer configured
    upstream_model: str | None  # the model id sent to that provider, when it is not `model`
    size: str
    seconds: str
    status: str
    progress: int
    archive: dict[str, str]  # variant → asset state; empty before completion
    created_at: datetime
    expires_at: datetime | None
    seconds_left: float | None  # until expires_at; negative once past
    at_risk: bool
    deleted: bool

    @property
    def lost(self) -> bool:
        """An archived variant went missing from S3 and upstream no longer has it (the audit's verdict)."""
        return AssetState.LOST.value in self.archive.values()


@dataclass(frozen=True)
class VideoPage:
    rows: list[VideoRow]
    filters: VideoFilters
    older: str | None  # cursor of the next (older) page
    newer: str | None  # cursor of the previous (newer) page; None on the first page
    at_risk_total: int
    callers: list[tuple[uuid.UUID, str]]


async def video_page(
    session: AsyncSession,
    *,
    settings: Settings,
    filters: VideoFilters,
    after: str | None,
    before: str | None,
    with_callers: bool = True,
) -> VideoPage:
    """One page of the table, newest first: `after` continues towards older rows, `before` back towards newer.
    `with_callers=False` skips the filter's list of callers (the self-refresh redraws only the rows)."""
    videos_repository = VideoRepository.from_session(session)
    limit = settings.console.page_size
    decoded = decode_cursor(before) or decode_cursor(after)
    direction: Direction = "newer" if decode_cursor(before) else "older"
    cursor = VideoCursor(decoded[0], decoded[1]) if decoded else None
    found = list(
        await videos_repository.page(
            status=filters.status, caller_id=filters.caller_id, cursor=cursor, direction=direction, limit=limit + 1
        )
    )
    if direction == "newer" and len(found) <= limit:
        # Fewer than a page of newer rows left: that is the first page, shown full.
        direction, cursor = "older", None
        found = list(
            await videos_repository.page(
                status=filters.status, caller_id=filters.caller_id, cursor=None, direction="older", limit=limit + 1
            )
        )
    more = len(found) > limit
    videos = found[:limit]
    if direction == "newer":
        videos.reverse()
    older = encode_cursor(videos[-1].created_at, videos[-1].id) if videos and (more or direction == "newer") else None
    newer = encode_cursor(videos[0].created_at, videos[0].id) if videos and cursor is not None else None
    risky = await queue.at_risk(session, within_seconds=settings.console.at_risk_minutes * 60, limit=AT_RISK_LIMIT)
    at_risk_ids = {str(row["video_id"]) for row in risky}
    names = await CallerRepository.from_session(session).caller_names({video.caller_id for video in videos})
    kinds = settings.profile_kinds()
    archive: dict[str, dict[str, str]] = {}
    for asset in await ArchiveRepository.from_session(session).assets_of_videos([video.id for video in videos]):
        archive.setdefault(asset.video_id, {})[asset.variant] = asset.state
    now = datetime.now(UTC)
    return VideoPage(
        rows=[
            _row(video, names.get(video.caller_id, "?"), archive.get(video.id, {}), video.id in at_risk_ids, now, kinds)
            for video in videos
        ],
        filters=filters,
        older=older,
        newer=newer,
        at_risk_total=len(at_risk_ids),
        callers=[(caller.id, caller.name) for caller in await auth_service.list_callers(session)]
        if with_callers
        else [],
    )


def _row(
    video: Video,
    caller_name: str,
    archive: dict[str, str],
    at_risk: bool,
    now: datetime,
    kinds: Mapping[str, str],
) -> VideoRow:
    order = [variant.value for variant in Variant]
    return VideoRow(
        id=video.id,
        caller_name=caller_name,
        model=video.model,
        upstream_profile=video.upstream_profile,
        provider_kind=kinds.get(video.upstream_profile),
        upstream_model=video.upstream_model if video.upstream_model != video.model else None,
        size=video.size,
        seconds=video.seconds,
        status=video.status,
        progress=video.progress,
        archive={variant: archive[variant] for variant in order if variant in archive},
        created_at=video.created_at,
        expires_at=video.expires_at,
        seconds_left=(video.expires_at - now).total_seconds() if video.expires_at else None,
        at_risk=at_risk,
        deleted=video.deleted_at is not None,
    )


# ----- one video ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # created, webhook, job, archived, callback, attempt, completed, failed
    title: str
    detail: str | None = None
    problem: bool = False  # an error worth the operator's eye


@dataclass(frozen=True)
class AssetView:
    variant: str
    state: str
    bytes: int | None
    sha256: str | None
    error: str | None
    url: str | None  # presigned, for archived assets


@dataclass(frozen=True)
class CallbackView:
    id: int
    url: str
    event_type: str
    state: str
    attempts: int
    last_error: str | None
    retryable: bool


@dataclass(frozen=True)
class VideoDetail:
    row: VideoRow
    prompt: str
    upstream_id: str | None
    upstream_profile: str
    error: str | None
    assets: list[AssetView]
    timeline: list[TimelineEntry]
    callbacks: list[CallbackView]
    media_origins: list[str] = field(default_factory=list)  # where presigned URLs point (the page's CSP)

    def asset(self, variant: str) -> AssetView | None:
        return next((asset for asset in self.assets if asset.variant == variant), None)


async def video_detail(
    session: AsyncSession, *, settings: Settings, storage: ArchiveStorage, video_id: str
) -> VideoDetail:
    video = await VideoRepository.from_session(session).get(video_id)
    if video is None:
        raise ResourceNotFound(f"No video with id '{video_id}'.", param="video_id")
    names = await CallerRepository.from_session(session).caller_names({video.caller_id})
    assets = await ArchiveRepository.from_session(session).assets_of(video.id)
    risky = await queue.at_risk(session, within_seconds=settings.console.at_risk_minutes * 60, limit=AT_RISK_LIMIT)
    row = _row(
        video,
        names.get(video.caller_id, "?"),
        {asset.variant: asset.state for asset in assets},
        any(str(job["video_id"]) == video.id for job in risky),
        datetime.now(UTC),
        settings.profile_kinds(),
    )
    # The browser fetches archived bytes straight from S3 with short-lived presigned URLs (see routes.py).
    views = []
    for variant in Variant:
        asset = next((a for a in assets if a.variant == variant.value), None)
        if asset is None:
            continue
        url = None
        if asset.state == AssetState.ARCHIVED.value and asset.s3_key:
            url = storage.presign_get(
                asset.s3_key, ttl_seconds=settings.s3.presign_ttl_seconds, content_type=variant.content_type
            )
        views.append(AssetView(asset.variant, asset.state, asset.bytes, asset.sha256, asset.error, url))
    callbacks = CallbackRepository.from_session(session)
    deliveries = await callbacks.deliveries_of_video(video.id)
    attempts = await callbacks.attempts_of([delivery.id for delivery in deliveries])
    timeline = [TimelineEntry(video.created_at, "created", f"created ({video.model}, {video.size}, {video.seconds}s)")]
    if video.completed_at is not None:
        timeline.append(TimelineEntry(video.completed_at, "completed", "completed upstream"))
    if video.status is VideoStatus.FAILED:
        timeline.append(
            TimelineEntry(video.updated_at, "failed", f"failed: {video.error_code}", video.error_message, problem=True)
        )
    for event in await WebhookRepository.from_session(session).events_of(video.id):
        timeline.append(
            TimelineEntry(
                event.received_at, "webhook", f"webhook {event.event_type}: {event.outcome}", event.webhook_id
            )
        )
    for job in await queue.jobs_of(session, video_id=video.id):
        what = f"{job.kind} job" + (f" ({job.variant})" if job.variant else "")
        timeline.append(TimelineEntry(job.created_at, "job", f"{what} queued"))
        if job.state != JobState.QUEUED or job.attempts:
            detail = f"attempts {job.attempts}/{job.max_attempts}"
            if job.last_error:
                detail += f"; last error: {job.last_error}"
            timeline.append(
                TimelineEntry(
                    job.finished_at or job.updated_at,
                    "job",
                    f"{what} {job.state}",
                    detail,
                    # An earlier attempt's error is only a note once the job succeeded.
                    problem=job.state in (JobState.FAILED, JobState.EXPIRED, JobState.DEAD)
                    or (job.state != JobState.SUCCEEDED and bool(job.last_error)),
                )
            )
    for asset in assets:
        if asset.state == AssetState.ARCHIVED.value:
            timeline.append(TimelineEntry(asset.updated_at, "archived", f"{asset.variant} archived", asset.s3_key))
        elif asset.state in (AssetState.FAILED.value, AssetState.EXPIRED.value, AssetState.LOST.value):
            timeline.append(
                TimelineEntry(asset.updated_at, "archived", f"{asset.variant} {asset.state}", asset.error, problem=True)
            )
    for delivery in deliveries:
        timeline.append(
            TimelineEntry(delivery.created_at, "callback", f"callback {delivery.event_type} queued", delivery.url)
        )
    for attempt in attempts:
        status = f"HTTP {attempt.status_code}" if attempt.status_code else attempt.outcome
        timeline.append(
            TimelineEntry(
                attempt.attempted_at,
                "attempt",
                f"callback attempt {attempt.attempt}: {attempt.outcome}",
                f"{status}" + (f"; {attempt.error}" if attempt.error else ""),
                problem=attempt.outcome != AttemptOutcome.DELIVERED,
            )
        )
    timeline.sort(key=lambda entry: entry.at)
    logged: dict[int, int] = {}
    for attempt in attempts:
        logged[attempt.delivery_id] = logged.get(attempt.delivery_id, 0) + 1
    return VideoDetail(
        row=row,
        prompt=video.prompt,
        upstream_id=video.upstream_id,
        upstream_profile=video.upstream_profile,
        error=f"{video.error_code}: {video.error_message}" if video.error_code else None,
        assets=views,
        timeline=timeline,
        callbacks=[
            CallbackView(
                id=delivery.id,
                url=delivery.url,
                event_type=delivery.event_type,
                state=delivery.state,
                attempts=delivery.attempts,
                last_error=delivery.last_error,
                retryable=callbacks_service.can_retry(delivery, logged_attempts=logged.get(delivery.id, 0)),
            )
            for delivery in deliveries
        ],
        media_origins=sorted({_origin(view.url) for view in views if view.url}),
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# The notice the video's page shows after a re-archive (its texts are in base.html).
REARCHIVE_NOTICES: Final = {
    archive_service.ReplayResult.QUEUED: "rearchived",
    archive_service.ReplayResult.NOT_COMPLETED: "not_rearchived",
    archive_service.ReplayResult.IN_FLIGHT: "not_rearchived",
    archive_service.ReplayResult.UPSTREAM_GONE: "upstream_gone",
    archive_service.ReplayResult.UPSTREAM_UNREACHABLE: "upstream_unreachable",
}


async def rearchive(
    session: AsyncSession, *, settings: Settings, upstreams: UpstreamRouter, video_id: str
) -> archive_service.ReplayOutcome:
    """Download the video's variants again where upstream still has them; nothing archived is discarded."""
    if await VideoRepository.from_session(session).get(video_id) is None:
        raise ResourceNotFound(f"No video with id '{video_id}'.", param="video_id")
    return await archive_service.replay(session, video_id=video_id, settings=settings, upstreams=upstreams)


async def retry_callback(session: AsyncSession, *, delivery_id: int) -> tuple[str, bool]:
    """The delivery's video (to go back to its page) and whether the retry was queued."""
    video_id = await CallbackRepository.from_session(session).video_of_delivery(delivery_id)
    if video_id is None:
        raise ResourceNotFound(f"No callback delivery {delivery_id}.", param="delivery_id")
    return video_id, await callbacks_service.retry_delivery(session, delivery_id=delivery_id)


# ----- webhooks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookPage:
    tapped: list[TappedDelivery]
    outcome: str | None
    stored: list[WebhookEvent]
    older: str | None


TAP_OUTCOMES: Final = ("verified", "duplicate", "rejected", "error")


async def webhook_page(
    session: AsyncSession, *, settings: Settings, log: DeliveryLog, outcome: str | None, after: str | None
) -> WebhookPage:
    decoded = decode_cursor(after)
    cursor = None
    if decoded is not None:
        try:
            cursor = EventCursor(decoded[0], uuid.UUID(decoded[1]))
        except ValueError:
            cursor = None
    limit = settings.console.page_size
    found = list(await WebhookRepository.from_session(session).page(cursor=cursor, limit=limit + 1))
    stored = found[:limit]
    older = encode_cursor(stored[-1].received_at, stored[-1].id) if len(found) > limit else None
    wanted = outcome if outcome in TAP_OUTCOMES else None
    return WebhookPage(tapped=log.recent(outcome=wanted), outcome=wanted, stored=stored, older=older)


# ----- callers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayBar:
    day: date
    renders: int
    cost_usd: Decimal


@dataclass(frozen=True)
class CallerView:
    id: uuid.UUID
    name: str
    disabled: bool
    keys: list[KeyRow]
    limits: EffectiveLimits
    period: PeriodSpend
    active_renders: int
    days: list[DayBar]

    @property
    def max_renders(self) -> int:
        return max((bar.renders for bar in self.days), default=0)

    @property
    def max_cost(self) -> Decimal:
        return max((bar.cost_usd for bar in self.days), default=Decimal(0))


async def callers(session: AsyncSession, *, settings: Settings) -> list[CallerView]:
    """Every caller with its keys (prefix only), effective limits, spend this period and the last 14 days."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=CHART_DAYS - 1)
    views = []
    for caller in await auth_service.list_callers(session):
        report = await limits_service.usage(
            session, caller=caller, start_date=first, end_date=today, settings=settings.limits
        )
        renders: dict[date, int] = {}
        cost: dict[date, Decimal] = {}
        for line in report.lines:
            renders[line.row.day] = renders.get(line.row.day, 0) + line.row.renders
            cost[line.row.day] = cost.get(line.row.day, Decimal(0)) + line.cost_usd
        days = [first + timedelta(days=offset) for offset in range(CHART_DAYS)]
        views.append(
            CallerView(
                id=caller.id,
                name=caller.name,
                disabled=caller.disabled_at is not None,
                keys=await auth_service.list_keys(session, caller_id=caller.id),
                limits=report.limits,
                period=report.current_period,
                active_renders=report.active_renders,
                days=[DayBar(day, renders.get(day, 0), cost.get(day, Decimal(0))) for day in days],
            )
        )
    return views
