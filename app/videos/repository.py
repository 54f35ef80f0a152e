"""Every query of the `videos` table: its one repository, which other domains import (decision 008).

Who reads what: the API's reads of a caller's own videos (always behind an ownership filter), the worker's
admission control and reconciler, the webhook receiver's lookups by upstream id, the console's pages, and the
limits' spend and usage aggregates. A statement whose first model is `Video` lives here, whatever it joins.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Integer, Select, and_, cast, exists, func, or_, select, text, tuple_, update
from sqlalchemy.orm import InstrumentedAttribute

from app.core.db import Database
from app.core.repository import Repository
from app.models import ACTIVE_STATES, ArchiveJob, Asset, AssetState, JobKind, Video, VideoOrigin, VideoStatus
from app.models.video import IN_FLIGHT, SUBMISSION_UNKNOWN, WAITING

# ----- the limits' accounting ---------------------------------------------------------------------

# A failed render is not charged, except one whose submission outcome is unknown: upstream may have
# started (and billed) it, so it keeps its reservation until an operator reconciles it.
MODERATION_BLOCKED = "moderation_blocked"
ACTIVE_STATUSES = (VideoStatus.QUEUED.value, VideoStatus.IN_PROGRESS.value)


def billable() -> ColumnElement[bool]:
    return or_(Video.status != VideoStatus.FAILED.value, Video.error_code == SUBMISSION_UNKNOWN)


def moderation_blocked() -> ColumnElement[bool]:
    return and_(Video.status == VideoStatus.FAILED.value, Video.error_code == MODERATION_BLOCKED)


def charged_seconds() -> ColumnElement[int]:
    """The seconds a render is charged for: an extension's new segment (`billed_seconds`), else its length."""
    return func.coalesce(Video.billed_seconds, cast(Video.seconds, Integer))


def _outcome_columns() -> list[ColumnElement[int]]:
    """Renders, completed, pending, failed, moderation-blocked, billed renders and billed seconds of a group."""
    failed = and_(Video.status == VideoStatus.FAILED.value, Video.error_code.is_distinct_from(MODERATION_BLOCKED))
    return [
        func.count(),
        func.count().filter(Video.status == VideoStatus.COMPLETED.value),
        func.count().filter(Video.status.in_(ACTIVE_STATUSES)),
        func.count().filter(failed),
        func.count().filter(moderation_blocked()),
        func.count().filter(billable()),
        func.coalesce(func.sum(charged_seconds()).filter(billable()), 0),
    ]


# Both usage rows are (group key, model, the seven outcome counts of `_outcome_columns`), in that order:
# `_usage_rows` builds either from one query shape.


@dataclass(frozen=True)
class UsageRow:
    day: date
    model: str
    renders: int
    completed: int
    pending: int
    failed: int
    moderation_blocked: int
    billed_renders: int
    billed_seconds: int


@dataclass(frozen=True)
class ProfileUsageRow:
    """Renders of one model on one upstream profile, by outcome (the caller's model: it sets the price)."""

    profile: str
    model: str
    renders: int
    completed: int
    pending: int
    failed: int
    moderation_blocked: int
    billed_renders: int
    billed_seconds: int


_Usage = TypeVar("_Usage", UsageRow, ProfileUsageRow)

# ----- the console's pages ------------------------------------------------------------------------

Direction = Literal["older", "newer"]


@dataclass(frozen=True)
class VideoCursor:
    created_at: datetime
    id: str


def page_statement(
    *,
    status: str | None,
    caller_id: uuid.UUID | None,
    cursor: VideoCursor | None,
    direction: Direction,
    limit: int,
) -> Select[Video]:
    """Newest first, keyset-paged on (created_at, id), never OFFSET: the indexes of migration 0009 serve it as an
    ordered range scan whatever the page. `older` continues after the cursor; `newer` reads back towards the
    newest (ascending; the caller reverses it). Public so the index test can EXPLAIN exactly what the console
    runs."""
    statement = select(Video)
    if status is not None:
        statement = statement.where(Video.status == status)
    if caller_id is not None:
        statement = statement.where(Video.caller_id == caller_id)
    key = tuple_(Video.created_at, Video.id)
    if direction == "older":
        if cursor is not None:
            statement = statement.where(key < tuple_(cursor.created_at, cursor.id))
        return statement.order_by(Video.created_at.desc(), Video.id.desc()).limit(limit)
    if cursor is not None:
        statement = statement.where(key > tuple_(cursor.created_at, cursor.id))
    return statement.order_by(Video.created_at.asc(), Video.id.asc()).limit(limit)


# ----- a caller's own videos, as the facade reads them (decision 013) -------------------------------------------

# The facade's reads are its hottest statements after the rate counter: written once as SQL text and run alone on
# the driver (`Database.fetch_alone`), they give plain rows, not ORM objects. The columns are what the wire shapes
# show (app/videos/schemas.py) and what decides a refresh from upstream (`upstream_id`, `status`, `refreshed_at`).
# They are composed from this module's constants only, never from input (hence `noqa: S608`), and compiled once.
_VIEW_COLUMNS = """
    v.id, v.seq, v.model, v.status, v.progress, v.created_at, v.completed_at, v.expires_at, v.prompt, v.size, v.seconds,
    v.remixed_from, v.origin, v.error_code, v.error_message, v.upstream_id, v.refreshed_at,
    v.metadata AS caller_metadata"""

READ_OWNED = text(
    f"""
SELECT {_VIEW_COLUMNS},
    a.variant AS asset_variant, a.state AS asset_state, a.bytes AS asset_bytes, a.sha256 AS asset_sha256,
    a.error AS asset_error
FROM videos v LEFT JOIN assets a ON a.video_id = v.id
WHERE v.id = :video_id AND v.caller_id = :caller_id AND v.deleted_at IS NULL
ORDER BY a.variant
"""  # noqa: S608
)

# A first page, newest or oldest first, on the (caller_id, seq) index.
LIST_FIRST = {
    order: text(
        f"""
SELECT {_VIEW_COLUMNS}
FROM videos v
WHERE v.caller_id = :caller_id AND v.deleted_at IS NULL
ORDER BY v.seq {order.upper()}
LIMIT :limit
"""  # noqa: S608
    )
    for order in ("asc", "desc")
}

# A page after the cursor video: the cursor's own lookup and the page in one statement. No cursor row (not the
# caller's video): no row at all; the cursor but an empty page: one row of NULLs (the LEFT JOIN's).
LIST_AFTER = {
    order: text(
        f"""
SELECT page.* FROM (SELECT seq FROM videos WHERE id = :after AND caller_id = :caller_id) AS cursor
LEFT JOIN LATERAL (
    SELECT {_VIEW_COLUMNS}
    FROM videos v
    WHERE v.caller_id = :caller_id AND v.deleted_at IS NULL AND v.seq {comparison} cursor.seq
    ORDER BY v.seq {order.upper()}
    LIMIT :limit
) AS page ON true
ORDER BY page.seq {order.upper()}
"""  # noqa: S608
    )
    for order, comparison in (("asc", ">"), ("desc", "<"))
}


@dataclass(frozen=True, slots=True)
class VideoView:
    """A video as the facade reads it: the fields its wire shapes show, and what decides a refresh."""

    id: str
    model: str
    status: VideoStatus
    progress: int
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    prompt: str
    size: str
    seconds: str
    remixed_from: str | None
    origin: VideoOrigin
    error_code: str | None
    error_message: str | None
    upstream_id: str | None
    refreshed_at: datetime | None
    caller_metadata: dict[str, str] | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> VideoView:
        """From a row holding `_VIEW_COLUMNS` (named as the fields are), status and origin as their enums."""
        values = {name: row[name] for name in cls.__slots__}
        values["status"] = VideoStatus(values["status"])
        values["origin"] = VideoOrigin(values["origin"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AssetStateView:
    """One variant's archive state as a retrieve shows it."""

    variant: str
    state: str
    bytes: int | None
    sha256: str | None
    error: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AssetStateView:
        """From a retrieve's row, whose asset columns are prefixed `asset_`."""
        return cls(*(row[f"asset_{name}"] for name in cls.__slots__))


@dataclass(frozen=True, slots=True)
class OwnedVideo:
    video: VideoView
    assets: list[AssetStateView]


def _has_live_job(kind: JobKind) -> ColumnElement[bool]:
    """The video has a queued or running job of `kind`: the maintenance queries skip what is already in hand."""
    return exists().where(
        and_(ArchiveJob.video_id == Video.id, ArchiveJob.kind == kind.value, ArchiveJob.state.in_(ACTIVE_STATES))
    )


class VideoRepository(Repository):
    # ----- one video ----------------------------------------------------------------------------

    async def get(self, video_id: str) -> Video | None:
        """The video as the database has it now (deleted or not), not a stale copy from this session."""
        return await self.session.get(Video, video_id, populate_existing=True)

    async def lock(self, video_id: str) -> Video | None:
        """The video row, fresh and locked until the transaction ends (its delete and the worker's submit take the
        same lock)."""
        statement = (
            select(Video).where(Video.id == video_id).with_for_update().execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def by_ids(self, video_ids: Sequence[str]) -> Sequence[Video]:
        if not video_ids:
            return []
        return (await self.session.execute(select(Video).where(Video.id.in_(list(video_ids))))).scalars().all()

    async def remove(self, video: Video) -> None:
        await self.session.delete(video)
        await self.session.flush()

    # ----- a caller's own videos (the API) ------------------------------------------------------

    async def get_owned(self, video_id: str, *, caller_id: uuid.UUID) -> Video | None:
        """The caller's live video, or None for unknown, deleted and other callers' ids alike."""
        statement = select(Video).where(Video.id == video_id, Video.caller_id == caller_id, Video.deleted_at.is_(None))
        return (await self.session.execute(statement)).scalar_one_or_none()

    @staticmethod
    async def read_owned(database: Database, video_id: str, *, caller_id: uuid.UUID) -> OwnedVideo | None:
        """The caller's live video with its asset rows (in variant order): a retrieve's one read, one statement
        run alone on the driver (decision 013). None for unknown, deleted and other callers' ids alike."""
        rows = await database.fetch_alone(READ_OWNED, {"video_id": video_id, "caller_id": caller_id})
        if not rows:
            return None
        assets = [AssetStateView.of(row) for row in rows if row["asset_variant"] is not None]
        return OwnedVideo(VideoView.of(rows[0]), assets)

    @staticmethod
    async def list_owned(
        database: Database,
        *,
        caller_id: uuid.UUID,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> list[VideoView] | None:
        """Up to `limit` videos after the cursor video `after`, in insertion order (`seq`): one statement alone on
        the driver (decision 013). None when `after` is not one of the caller's videos (deleted ones still count,
        so paging never breaks)."""
        if after is None:
            rows = await database.fetch_alone(LIST_FIRST[order], {"caller_id": caller_id, "limit": limit})
            return [VideoView.of(row) for row in rows]
        rows = await database.fetch_alone(LIST_AFTER[order], {"caller_id": caller_id, "after": after, "limit": limit})
        if not rows:  # the cursor's own row comes first when it exists (below), so none means no cursor
            return None
        return [VideoView.of(row) for row in rows if row["id"] is not None]

    # ----- admission control (app/archive/admission.py, app/archive/jobs.py) --------------------
    # WAITING and IN_FLIGHT are the partial indexes' predicates, repeated verbatim so the planner uses them.

    async def waiting_count(self, profile: str, *, before_seq: int | None = None) -> int:
        """The profile's videos waiting to be sent (all, or those that arrived before `before_seq`)."""
        statement = select(func.count()).select_from(Video).where(Video.upstream_profile == profile, text(WAITING))
        if before_seq is not None:
            statement = statement.where(Video.seq < before_seq)
        return int((await self.session.execute(statement)).scalar_one())

    async def oldest_waiting(self, profile: str) -> str | None:
        """The id of the profile's video first in line, if any waits."""
        statement = (
            select(Video.id).where(Video.upstream_profile == profile, text(WAITING)).order_by(Video.seq).limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def in_flight(self, profile: str) -> int:
        """The profile's renders sent (or being sent) and not finished, deleted ones aside."""
        statement = (
            select(func.count())
            .select_from(Video)
            .where(Video.upstream_profile == profile, text(IN_FLIGHT), Video.deleted_at.is_(None))
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def recent_submission_ages(self, profile: str, *, within_seconds: float, limit: int) -> list[float]:
        """Seconds since each of the profile's latest `limit` submissions within the window, newest first.

        The database's clock_timestamp(), not now(): now() is when this transaction began, which may be long
        before it got the admission lock.
        """
        age = func.extract("epoch", func.clock_timestamp() - Video.submitted_at)
        statement = (
            select(age)
            .where(
                Video.upstream_profile == profile,
                Video.submitted_at > func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, within_seconds),
            )
            .order_by(Video.submitted_at.desc())
            .limit(limit)
        )
        return [float(value) for value in (await self.session.execute(statement)).scalars()]

    async def mark_submitted(self, video_id: str, *, submitted: bool) -> None:
        """Stamp the video as sent upstream now (database clock), or clear that stamp after a refusal that
        certainly started nothing (the video waits again, first in line)."""
        value = func.clock_timestamp() if submitted else None
        await self.session.execute(
            update(Video)
            .where(Video.id == video_id, Video.upstream_id.is_(None))
            .values(submitted_at=value)
            .execution_options(synchronize_session=False)
        )

    # ----- the reconciler (app/archive/reconciler.py, app/archive/submissions.py) ---------------

    async def unsubmitted_videos(self, *, submitted_before: datetime, limit: int) -> Sequence[Video]:
        """Queued videos sent upstream before `submitted_before` that never got an upstream id: their create was
        cut off before upstream answered. Videos still waiting to be sent (admission control: `submitted_at`
        NULL) are not among them: nothing was sent, so there is nothing to find or settle.

        Locked with SKIP LOCKED, so concurrent reconcilers on several workers never settle the same row twice.
        `unsubmitted_after_seconds` is far above the upstream timeout, so no live create still owns these rows.
        """
        statement = (
            select(Video)
            .where(
                Video.status == VideoStatus.QUEUED.value,
                Video.upstream_id.is_(None),
                Video.deleted_at.is_(None),
                Video.submitted_at < submitted_before,
            )
            .order_by(Video.submitted_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def waiting_without_submit_job(self, *, limit: int) -> Sequence[Video]:
        """Waiting videos with no live `submit` job (a job lost to a dead worker on its last attempt)."""
        live_submit = _has_live_job(JobKind.SUBMIT)
        statement = select(Video).where(text(WAITING), ~live_submit).order_by(Video.seq).limit(limit)
        return (await self.session.execute(statement)).scalars().all()

    async def claimed_upstream_ids(self, *, profile: str, upstream_ids: Sequence[str]) -> set[str]:
        """Which of these upstream renders already belong to a video of ours (deleted ones included)."""
        if not upstream_ids:
            return set()
        statement = select(Video.upstream_id).where(
            Video.upstream_profile == profile, Video.upstream_id.in_(list(upstream_ids))
        )
        return {upstream_id for upstream_id in (await self.session.execute(statement)).scalars() if upstream_id}

    async def videos_to_reconcile(
        self, *, stale_before: datetime, created_after: datetime, limit: int
    ) -> Sequence[Video]:
        """Our non-terminal videos that upstream knows, not refreshed recently, not already being synced."""
        active_sync = _has_live_job(JobKind.SYNC)
        statement = (
            select(Video)
            .where(
                Video.status.in_(ACTIVE_STATUSES),
                Video.upstream_id.is_not(None),
                Video.deleted_at.is_(None),
                Video.created_at > created_after,
                (Video.refreshed_at.is_(None)) | (Video.refreshed_at < stale_before),
                ~active_sync,
            )
            .order_by(Video.refreshed_at.asc().nulls_first())
            .limit(limit)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def completed_videos_missing_assets(self, *, limit: int) -> Sequence[Video]:
        """Completed videos with an asset still pending and no live download job (e.g. a lost enqueue)."""
        pending_asset = exists().where(
            and_(Asset.video_id == Video.id, Asset.state.in_((AssetState.PENDING.value, AssetState.DOWNLOADING.value)))
        )
        no_assets = ~exists().where(Asset.video_id == Video.id)
        live_download = _has_live_job(JobKind.DOWNLOAD)
        statement = (
            select(Video)
            .where(
                Video.status == VideoStatus.COMPLETED.value,
                Video.deleted_at.is_(None),
                pending_asset | no_assets,
                ~live_download,
            )
            .limit(limit)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def unfinished_videos(self, *, profile: str, limit: int) -> Sequence[Video]:
        """The profile's live videos upstream knows that are still queued or in progress, newest first."""
        statement = (
            select(Video)
            .where(
                Video.upstream_profile == profile,
                Video.upstream_id.is_not(None),
                Video.deleted_at.is_(None),
                Video.status.in_(ACTIVE_STATUSES),
            )
            .order_by(Video.created_at.desc())
            .limit(limit)
        )
        return (await self.session.execute(statement)).scalars().all()

    # ----- the console (app/console/service.py) -------------------------------------------------

    async def page(
        self,
        *,
        status: str | None,
        caller_id: uuid.UUID | None,
        cursor: VideoCursor | None,
        direction: Direction,
        limit: int,
    ) -> Sequence[Video]:
        statement = page_statement(status=status, caller_id=caller_id, cursor=cursor, direction=direction, limit=limit)
        return (await self.session.execute(statement)).scalars().all()

    # ----- the limits: spend, concurrency, usage (app/limits/service.py) ------------------------

    async def billed_seconds_by_model(self, caller_id: uuid.UUID, *, since: datetime) -> dict[str, int]:
        """Seconds charged or reserved since `since`, per model: every render except failed ones that
        upstream certainly did not bill. Deleted videos still count: the money was spent."""
        statement = (
            select(Video.model, func.sum(charged_seconds()))
            .where(Video.caller_id == caller_id, Video.created_at >= since, billable())
            .group_by(Video.model)
        )
        return {model: int(total or 0) for model, total in (await self.session.execute(statement)).all()}

    async def active_renders(self, caller_id: uuid.UUID) -> int:
        """Renders queued or in progress (including creates still in flight upstream)."""
        statement = (
            select(func.count())
            .select_from(Video)
            .where(Video.caller_id == caller_id, Video.status.in_(ACTIVE_STATUSES), Video.deleted_at.is_(None))
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def usage_by_day(self, caller_id: uuid.UUID, *, start: datetime, end: datetime) -> list[UsageRow]:
        """Per UTC day and model, renders created in [start, end) by outcome, and the billed seconds."""
        day = func.date(func.timezone("UTC", Video.created_at)).label("day")
        return await self._usage_rows(UsageRow, day, caller_id, start=start, end=end)

    async def usage_by_profile(self, caller_id: uuid.UUID, *, start: datetime, end: datetime) -> list[ProfileUsageRow]:
        """Per upstream profile and model, renders created in [start, end) by outcome, and the billed seconds."""
        return await self._usage_rows(ProfileUsageRow, Video.upstream_profile, caller_id, start=start, end=end)

    async def _usage_rows(
        self,
        row: type[_Usage],
        group: ColumnElement[Any] | InstrumentedAttribute[Any],
        caller_id: uuid.UUID,
        *,
        start: datetime,
        end: datetime,
    ) -> list[_Usage]:
        """The caller's renders created in [start, end), per (`group`, model), as `row`s."""
        statement = (
            select(group, Video.model, *_outcome_columns())
            .where(Video.caller_id == caller_id, Video.created_at >= start, Video.created_at < end)
            .group_by(group, Video.model)
            .order_by(group, Video.model)
        )
        return [
            row(key, model, renders, completed, pending, failed, blocked, billed_renders, int(billed_seconds))
            for key, model, renders, completed, pending, failed, blocked, billed_renders, billed_seconds in (
                await self.session.execute(statement)
            ).all()
        ]
