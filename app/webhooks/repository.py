"""Queries of the webhook receiver: record a delivery once, and find the video an event is about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import EventOutcome, Video, WebhookEvent


@dataclass(frozen=True)
class WebhookRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> WebhookRepository:
        return cls(session)

    async def video_by_upstream_ids(self, upstream_ids: Sequence[str], *, profile: str) -> Video | None:
        """Our video for one of these upstream ids (the forms one event's object may take), deleted or not (the
        caller decides what a deleted one means)."""
        if not upstream_ids:
            return None
        statement = (
            select(Video)
            .where(Video.upstream_profile == profile, Video.upstream_id.in_(list(upstream_ids)))
            .order_by(Video.created_at)
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def unfinished_videos(self, *, profile: str, limit: int) -> Sequence[Video]:
        """The profile's live videos still queued or in progress, newest first."""
        statement = (
            select(Video)
            .where(
                Video.upstream_profile == profile,
                Video.upstream_id.is_not(None),
                Video.deleted_at.is_(None),
                Video.status.in_(("queued", "in_progress")),
            )
            .order_by(Video.created_at.desc())
            .limit(limit)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def recent(self, *, limit: int, outcome: str | None = None) -> Sequence[WebhookEvent]:
        """The latest stored deliveries, newest first, optionally of one outcome."""
        statement = select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
        if outcome is not None:
            statement = statement.where(WebhookEvent.outcome == outcome)
        return (await self.session.execute(statement)).scalars().all()

    async def record(
        self,
        *,
        webhook_id: str,
        event_id: str | None,
        event_type: str,
        upstream_profile: str,
        upstream_video_id: str | None,
        video_id: str | None,
        outcome: EventOutcome,
        body: str,
    ) -> bool:
        """Insert the delivery; False when one with the same `webhook_id` or `event_id` exists.

        No conflict target, so both unique indexes count. A concurrent copy of the same delivery waits on the
        first one's transaction and then does nothing: it never raises, and never inserts a second row.
        """
        statement = (
            insert(WebhookEvent)
            .values(
                webhook_id=webhook_id,
                event_id=event_id,
                event_type=event_type,
                upstream_profile=upstream_profile,
                upstream_video_id=upstream_video_id,
                video_id=video_id,
                outcome=outcome.value,
                body=body,
            )
            .on_conflict_do_nothing()
            .returning(WebhookEvent.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None
