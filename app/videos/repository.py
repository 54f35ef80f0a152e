"""Queries on videos. Every read of a caller's video goes through an ownership filter here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Video, VideoInput
from app.upstream.schemas import ImageInput


@dataclass(frozen=True)
class VideoRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> VideoRepository:
        return cls(session)

    async def add(self, video: Video) -> Video:
        self.session.add(video)
        await self.session.flush()
        return video

    async def add_input(self, video_id: str, image: ImageInput) -> None:
        """Keep a waiting create's input image until the worker sends it (admission control)."""
        self.session.add(
            VideoInput(
                video_id=video_id,
                image=image.data,
                content_type=image.content_type,
                filename=image.filename,
                width=image.width,
                height=image.height,
            )
        )
        await self.session.flush()

    async def lock(self, video_id: str) -> Video:
        """The video row re-read and locked until the transaction ends."""
        statement = (
            select(Video).where(Video.id == video_id).with_for_update().execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one()

    async def remove(self, video: Video) -> None:
        await self.session.delete(video)
        await self.session.flush()

    async def get_owned(self, video_id: str, *, caller_id: uuid.UUID) -> Video | None:
        """The caller's live video, or None for unknown, deleted and other callers' ids alike."""
        statement = select(Video).where(Video.id == video_id, Video.caller_id == caller_id, Video.deleted_at.is_(None))
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def list_owned(
        self,
        *,
        caller_id: uuid.UUID,
        after_seq: int | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> Sequence[Video]:
        """Up to `limit` videos after the cursor, in insertion order (`seq`)."""
        statement = select(Video).where(Video.caller_id == caller_id, Video.deleted_at.is_(None))
        if order == "asc":
            if after_seq is not None:
                statement = statement.where(Video.seq > after_seq)
            statement = statement.order_by(Video.seq.asc())
        else:
            if after_seq is not None:
                statement = statement.where(Video.seq < after_seq)
            statement = statement.order_by(Video.seq.desc())
        return (await self.session.execute(statement.limit(limit))).scalars().all()

    async def cursor_seq(self, video_id: str, *, caller_id: uuid.UUID) -> int | None:
        """The position of a caller's video for `after=`; deleted ones still count so paging never breaks."""
        statement = select(Video.seq).where(Video.id == video_id, Video.caller_id == caller_id)
        return (await self.session.execute(statement)).scalar_one_or_none()
