"""ORM queries of the archive: asset rows, the videos the worker and reconciler act on, and the audit's batches."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    ACTIVE_STATES,
    ArchiveJob,
    Asset,
    AssetState,
    EventOutcome,
    JobKind,
    Variant,
    Video,
    VideoInput,
    VideoStatus,
    WebhookEvent,
)
from app.models.video import IN_FLIGHT, WAITING


@dataclass(frozen=True)
class AssetView:
    variant: str
    state: str

    @property
    def needs_download(self) -> bool:
        return self.state in (AssetState.PENDING.value, AssetState.DOWNLOADING.value)


@dataclass(frozen=True)
class AuditTarget:
    """An archived asset as the audit read it: what its object in S3 must be."""

    video_id: str
    variant: str
    s3_key: str
    bytes: int | None
    sha256: str | None


@dataclass(frozen=True)
class ArchiveRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> ArchiveRepository:
        return cls(session)

    async def ensure_assets(self, video_id: str) -> list[AssetView]:
        """One row per variant (pending unless it exists already); returns all three."""
        await self.session.execute(
            insert(Asset)
            .values(
                [
                    {"id": uuid.uuid4(), "video_id": video_id, "variant": variant.value, "state": "pending"}
                    for variant in Variant
                ]
            )
            .on_conflict_do_nothing(index_elements=["video_id", "variant"])
        )
        rows = await self.session.execute(select(Asset.variant, Asset.state).where(Asset.video_id == video_id))
        return [AssetView(variant=variant, state=state) for variant, state in rows.all()]

    async def serialize_outcomes(self, video_id: str) -> None:
        """Hold, until this transaction ends, the lock under which a video's asset outcomes are judged.

        Three downloads of one video finish in concurrent transactions; without this, each could see the
        other two still running (their updates uncommitted) and no one would announce the video archived.
        An advisory lock serializes only that judgement, without touching rows others may hold.
        """
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"asset-outcome:{video_id}"}
        )

    async def assets_of(self, video_id: str) -> Sequence[Asset]:
        return (await self.session.execute(select(Asset).where(Asset.video_id == video_id))).scalars().all()

    async def archived_asset(self, video_id: str, variant: Variant) -> Asset | None:
        statement = select(Asset).where(
            Asset.video_id == video_id, Asset.variant == variant.value, Asset.state == AssetState.ARCHIVED.value
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def set_asset(self, video_id: str, variant: str, **values: object) -> None:
        await self.session.execute(
            update(Asset)
            .where(Asset.video_id == video_id, Asset.variant == variant)
            .values(**values, updated_at=datetime.now().astimezone())
        )

    async def set_unless_archived(self, video_id: str, variant: str, **values: object) -> bool:
        """What a download's progress or failure does to its asset, unless the asset is archived; False then.

        An archived asset being downloaded again (a replay) stays archived, and served, until the new copy
        lands: a re-download that is pending, retrying or failed never takes a good copy out of service.
        """
        result = await self.session.execute(
            update(Asset)
            .where(Asset.video_id == video_id, Asset.variant == variant, Asset.state != AssetState.ARCHIVED.value)
            .values(**values, updated_at=datetime.now().astimezone())
            .returning(Asset.id)
        )
        return result.first() is not None

    async def note_on_archived(self, video_id: str, variant: str, note: str) -> None:
        """Record why a re-download of an archived asset gave up; the archived copy stays as it was."""
        await self.session.execute(
            update(Asset)
            .where(Asset.video_id == video_id, Asset.variant == variant, Asset.state == AssetState.ARCHIVED.value)
            .values(error=note, updated_at=datetime.now().astimezone())
        )

    async def lock_asset(self, video_id: str, variant: str) -> Asset | None:
        """The asset row, locked until the transaction ends (the audit re-reads what it is about to act on)."""
        statement = (
            select(Asset)
            .where(Asset.video_id == video_id, Asset.variant == variant)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def claim_audit_batch(
        self, *, checked_before: datetime | None, limit: int, claim: bool = True
    ) -> list[AuditTarget]:
        """Up to `limit` archived assets of live videos, least recently audited first, stamped audited now.

        Locked with SKIP LOCKED and stamped in the same transaction, so workers auditing at once take disjoint
        batches. `checked_before`: only assets not audited since (the worker's pace); None takes any (the
        operator's `video-gateway audit`). `claim=False` only reads them (a dry run).
        """
        due = [
            Asset.state == AssetState.ARCHIVED.value,
            Asset.s3_key.is_not(None),
            exists().where(and_(Video.id == Asset.video_id, Video.deleted_at.is_(None))),
        ]
        if checked_before is not None:
            due.append(Asset.audited_at.is_(None) | (Asset.audited_at < checked_before))
        statement = select(Asset).where(*due).order_by(Asset.audited_at.asc().nulls_first()).limit(limit)
        if claim:
            statement = statement.with_for_update(skip_locked=True, of=Asset)
        assets = (await self.session.execute(statement)).scalars().all()
        if assets and claim:
            await self.session.execute(
                update(Asset)
                .where(Asset.id.in_([asset.id for asset in assets]))
                # A check is not a change of the asset: updated_at (the console's timeline) stays.
                .values(audited_at=func.now(), updated_at=Asset.updated_at)
            )
        return [_target(asset) for asset in assets]

    async def archived_of_video(self, video_id: str, *, limit: int) -> list[AuditTarget]:
        """The archived assets of one live video, for an audit of that video alone (nothing stamped)."""
        statement = (
            select(Asset)
            .join(Video, Video.id == Asset.video_id)
            .where(
                Asset.video_id == video_id,
                Asset.state == AssetState.ARCHIVED.value,
                Asset.s3_key.is_not(None),
                Video.deleted_at.is_(None),
            )
            .limit(limit)
        )
        return [_target(asset) for asset in (await self.session.execute(statement)).scalars().all()]

    async def stamp_audited(self, video_id: str, variant: str, *, checked: bool) -> None:
        """After a check: audited now, or (`checked=False`, S3 could not say) due again first thing."""
        await self.session.execute(
            update(Asset)
            .where(Asset.video_id == video_id, Asset.variant == variant)
            .values(audited_at=func.now() if checked else None, updated_at=Asset.updated_at)
        )

    async def get_video(self, video_id: str) -> Video | None:
        return await self.session.get(Video, video_id, populate_existing=True)

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

    # ----- admission control (app/archive/admission.py) -------------------------------------------

    async def lock_admission(self, profile: str, *, scope: str) -> None:
        """Serialize, until this transaction ends, one kind of admission decision for a profile.

        `gate`: which waiting create goes upstream next (the worker's submit jobs); `backlog`: whether one more
        create may join the line (the API). Advisory locks, so no row a poll or a webhook needs is held.
        """
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"admission-{scope}:{profile}"}
        )

    async def lock_video(self, video_id: str) -> Video | None:
        """The video row, fresh and locked until the transaction ends (its delete takes the same lock)."""
        statement = (
            select(Video).where(Video.id == video_id).with_for_update().execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

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

    async def video_input(self, video_id: str) -> VideoInput | None:
        return await self.session.get(VideoInput, video_id)

    async def drop_video_input(self, video_id: str) -> None:
        await self.session.execute(delete(VideoInput).where(VideoInput.video_id == video_id))

    async def waiting_without_submit_job(self, *, limit: int) -> Sequence[Video]:
        """Waiting videos with no live `submit` job (a job lost to a dead worker on its last attempt)."""
        live_submit = exists().where(
            and_(
                ArchiveJob.video_id == Video.id,
                ArchiveJob.kind == JobKind.SUBMIT.value,
                ArchiveJob.state.in_(ACTIVE_STATES),
            )
        )
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
        active_sync = exists().where(
            and_(
                ArchiveJob.video_id == Video.id,
                ArchiveJob.kind == JobKind.SYNC.value,
                ArchiveJob.state.in_(ACTIVE_STATES),
            )
        )
        statement = (
            select(Video)
            .where(
                Video.status.in_((VideoStatus.QUEUED.value, VideoStatus.IN_PROGRESS.value)),
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

    async def match_orphan_events(self, *, limit: int) -> Sequence[Video]:
        """Mark webhook events that arrived before their video was ours as matched; returns those videos.

        A webhook can beat the commit of our create row (or come from another project); it is kept as an
        orphan and matched here once a live video with that upstream id exists.
        """
        matched = (
            update(WebhookEvent)
            .where(
                WebhookEvent.outcome == EventOutcome.ORPHAN.value,
                WebhookEvent.upstream_video_id == Video.upstream_id,
                WebhookEvent.upstream_profile == Video.upstream_profile,
                Video.deleted_at.is_(None),
                WebhookEvent.id.in_(
                    select(WebhookEvent.id).where(WebhookEvent.outcome == EventOutcome.ORPHAN.value).limit(limit)
                ),
            )
            .values(outcome=EventOutcome.MATCHED.value, video_id=Video.id)
            .returning(Video.id)
        )
        video_ids = set((await self.session.execute(matched)).scalars().all())
        if not video_ids:
            return []
        return (await self.session.execute(select(Video).where(Video.id.in_(video_ids)))).scalars().all()

    async def completed_videos_missing_assets(self, *, limit: int) -> Sequence[Video]:
        """Completed videos with an asset still pending and no live download job (e.g. a lost enqueue)."""
        pending_asset = exists().where(
            and_(Asset.video_id == Video.id, Asset.state.in_((AssetState.PENDING.value, AssetState.DOWNLOADING.value)))
        )
        no_assets = ~exists().where(Asset.video_id == Video.id)
        live_download = exists().where(
            and_(
                ArchiveJob.video_id == Video.id,
                ArchiveJob.kind == JobKind.DOWNLOAD.value,
                ArchiveJob.state.in_(ACTIVE_STATES),
            )
        )
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


def _target(asset: Asset) -> AuditTarget:
    assert asset.s3_key is not None  # selected with s3_key IS NOT NULL
    return AuditTarget(
        video_id=asset.video_id, variant=asset.variant, s3_key=asset.s3_key, bytes=asset.bytes, sha256=asset.sha256
    )
