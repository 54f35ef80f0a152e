"""Read-only queries of the console: keyset pages of videos and webhook deliveries, and one video's history.

Pages never use OFFSET: they continue strictly after (or before) the (time, id) of the last row shown, which
the indexes of migration 0009 serve as an ordered range scan, whatever the page number and the table's size.
Writes (re-archive, callback retry) go through the owning domains' services, not through here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ArchiveJob, Asset, CallbackAttempt, CallbackDelivery, Caller, Video, WebhookEvent

Direction = Literal["older", "newer"]


@dataclass(frozen=True)
class VideoCursor:
    created_at: datetime
    id: str


@dataclass(frozen=True)
class EventCursor:
    received_at: datetime
    id: uuid.UUID


def video_page_statement(
    *,
    status: str | None,
    caller_id: uuid.UUID | None,
    cursor: VideoCursor | None,
    direction: Direction,
    limit: int,
) -> Select[Video]:
    """Newest first. `older` continues after the cursor; `newer` reads back towards the newest (ascending; the
    caller reverses it). Public so the index test can EXPLAIN exactly what the console runs."""
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


@dataclass(frozen=True)
class ConsoleRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> ConsoleRepository:
        return cls(session)

    # ----- videos -------------------------------------------------------------------------------

    async def video_page(
        self,
        *,
        status: str | None,
        caller_id: uuid.UUID | None,
        cursor: VideoCursor | None,
        direction: Direction,
        limit: int,
    ) -> Sequence[Video]:
        statement = video_page_statement(
            status=status, caller_id=caller_id, cursor=cursor, direction=direction, limit=limit
        )
        return (await self.session.execute(statement)).scalars().all()

    async def caller_names(self, caller_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not caller_ids:
            return {}
        rows = await self.session.execute(select(Caller.id, Caller.name).where(Caller.id.in_(caller_ids)))
        return {row[0]: row[1] for row in rows.all()}

    async def assets_of_videos(self, video_ids: list[str]) -> Sequence[Asset]:
        if not video_ids:
            return []
        return (await self.session.execute(select(Asset).where(Asset.video_id.in_(video_ids)))).scalars().all()

    async def video(self, video_id: str) -> Video | None:
        return await self.session.get(Video, video_id)

    # ----- one video's history ------------------------------------------------------------------

    async def webhook_events_of(self, video_id: str) -> Sequence[WebhookEvent]:
        statement = select(WebhookEvent).where(WebhookEvent.video_id == video_id).order_by(WebhookEvent.received_at)
        return (await self.session.execute(statement)).scalars().all()

    async def jobs_of(self, video_id: str) -> Sequence[ArchiveJob]:
        statement = select(ArchiveJob).where(ArchiveJob.video_id == video_id).order_by(ArchiveJob.id)
        return (await self.session.execute(statement)).scalars().all()

    async def callback_deliveries_of(self, video_id: str) -> Sequence[CallbackDelivery]:
        statement = select(CallbackDelivery).where(CallbackDelivery.video_id == video_id).order_by(CallbackDelivery.id)
        return (await self.session.execute(statement)).scalars().all()

    async def callback_attempts_of(self, delivery_ids: list[int]) -> Sequence[CallbackAttempt]:
        if not delivery_ids:
            return []
        statement = (
            select(CallbackAttempt)
            .where(CallbackAttempt.delivery_id.in_(delivery_ids))
            .order_by(CallbackAttempt.attempted_at, CallbackAttempt.id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def video_of_delivery(self, delivery_id: int) -> str | None:
        statement = select(CallbackDelivery.video_id).where(CallbackDelivery.id == delivery_id)
        return (await self.session.execute(statement)).scalar_one_or_none()

    # ----- stored webhook deliveries ------------------------------------------------------------

    async def webhook_page(self, *, cursor: EventCursor | None, limit: int) -> Sequence[WebhookEvent]:
        """Newest first, after `cursor` (the last row of the previous page)."""
        statement = select(WebhookEvent)
        if cursor is not None:
            statement = statement.where(
                tuple_(WebhookEvent.received_at, WebhookEvent.id) < tuple_(cursor.received_at, cursor.id)
            )
        statement = statement.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc()).limit(limit)
        return (await self.session.execute(statement)).scalars().all()
