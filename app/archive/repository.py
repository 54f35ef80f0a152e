"""Every query of the `assets` and `video_inputs` tables (their one repository, decision 008), and the archive's
named advisory locks: a video's asset outcomes, and a profile's admission decisions.

The rows of the archive job queue are `app.archive.queue`'s (named SQL); the videos these rows belong to are
`app.videos.repository`'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import Repository
from app.models import Asset, AssetState, Variant, Video, VideoInput


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


class ArchiveRepository(Repository):
    async def ensure_assets(self, video_id: str) -> list[AssetView]:
        """One row per variant (pending unless it exists already); returns all three."""
        await self.session.execute(
            insert(Asset)
            .values(
                [
                    {"id": uuid.uuid4(), "video_id": video_id, "variant": variant.value, "state": AssetState.PENDING}
                    for variant in Variant
                ]
            )
            .on_conflict_do_nothing(index_elements=["video_id", "variant"])
        )
        rows = await self.session.execute(select(Asset.variant, Asset.state).where(Asset.video_id == video_id))
        return [AssetView(variant=variant, state=state) for variant, state in rows.all()]

    async def lock_video_outcomes(self, video_id: str) -> None:
        """Hold, until this transaction ends, the lock under which a video's asset outcomes are judged.

        The video's downloads (and the audit, and the worker's maintenance) settle its assets in concurrent
        transactions; each writes its own asset row first, then takes this lock and reads every variant. Without
        it, two could each see the other's variant still running (its update uncommitted) and no one would
        report the video (`video.archived` or `video.archive_failed`), or record its completion-to-archive time.
        With it (READ COMMITTED: each statement after the lock sees the commits before it), the last to take the
        lock sees every variant as settled, and alone acts on it.

        Take it after this transaction's own asset writes, never before: a transaction holding it then waits for
        no asset row, so it cannot deadlock with one that holds an asset row and waits for it. An advisory lock
        on the video's id, so no row a poll, a webhook or a sibling download needs is held. Taking it again in the
        same transaction is harmless (it is re-entrant, and released once, at the end).
        """
        # The key is the one this lock has always had, so workers of the previous release exclude these too.
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"asset-outcome:{video_id}"}
        )

    async def assets_of(self, video_id: str) -> Sequence[Asset]:
        """The video's asset rows, in variant order (the order callbacks and the API list them in)."""
        statement = select(Asset).where(Asset.video_id == video_id).order_by(Asset.variant)
        return (await self.session.execute(statement)).scalars().all()

    async def assets_of_videos(self, video_ids: Sequence[str]) -> Sequence[Asset]:
        """The asset rows of several videos at once (the console's page of videos)."""
        if not video_ids:
            return []
        statement = select(Asset).where(Asset.video_id.in_(list(video_ids))).order_by(Asset.video_id, Asset.variant)
        return (await self.session.execute(statement)).scalars().all()

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

    # ----- admission control (app/archive/admission.py) -----------------------------------------

    async def lock_admission_gate(self, profile: str) -> None:
        """Serialize, until this transaction ends, which of the profile's waiting creates goes upstream next (the
        worker's submit jobs). An advisory lock, so no row a poll or a webhook needs is held."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"admission-gate:{profile}"}
        )

    async def lock_admission_backlog(self, profile: str) -> None:
        """Serialize, until this transaction ends, whether one more create may join the profile's line (the API),
        so concurrent creates cannot all take its last place. Apart from the gate's lock: a create being accepted
        need not wait for a submit deciding, nor the other way round."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"admission-backlog:{profile}"}
        )

    # ----- the inputs of waiting creates --------------------------------------------------------

    async def add_input(
        self, video_id: str, *, image: bytes, content_type: str, filename: str, width: int, height: int
    ) -> None:
        """Keep a waiting create's input image until the worker sends it (admission control)."""
        await self.add(
            VideoInput(
                video_id=video_id,
                image=image,
                content_type=content_type,
                filename=filename,
                width=width,
                height=height,
            )
        )

    async def video_input(self, video_id: str) -> VideoInput | None:
        return await self.session.get(VideoInput, video_id)

    async def drop_video_input(self, video_id: str) -> None:
        await self.session.execute(delete(VideoInput).where(VideoInput.video_id == video_id))


def _target(asset: Asset) -> AuditTarget:
    assert asset.s3_key is not None  # selected with s3_key IS NOT NULL
    return AuditTarget(
        video_id=asset.video_id, variant=asset.variant, s3_key=asset.s3_key, bytes=asset.bytes, sha256=asset.sha256
    )
