"""ORM queries of the archive: asset rows, the videos the worker and reconciler act on, and the audit's batches."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, select, text, update
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
    VideoStatus,
    WebhookEvent,
)


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

    async def unsubmitted_videos(self, *, created_before: datetime, limit: int) -> Sequence[Video]:
        """Queued videos that never got an upstream id: their create was cut off before upstream answered.

        Locked with SKIP LOCKED, so concurrent reconcilers on several workers never settle the same row twice.
        `unsubmitted_after_seconds` is far above the upstream timeout, so no live create still owns these rows.
        """
        statement = (
            select(Video)
            .where(
                Video.status == VideoStatus.QUEUED.value,
                Video.upstream_id.is_(None),
                Video.deleted_at.is_(None),
                Video.created_at < created_before,
            )
            .order_by(Video.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
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
