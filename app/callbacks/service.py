"""Callback hooks called by the facade and the archive worker (placeholder: nothing is delivered yet)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import CallbackSettings
from app.models import Video


class CallbackEvent(StrEnum):
    ARCHIVED = "video.archived"
    FAILED = "video.failed"
    ARCHIVE_FAILED = "video.archive_failed"


def validate_callback_url(url: str, settings: CallbackSettings) -> None:
    """Refuse (InvalidRequest, 400, saying why) a callback URL outside the operator's allow-list."""


async def on_video_event(
    session: AsyncSession, *, video: Video, event: CallbackEvent, settings: CallbackSettings
) -> None:
    """Record `event` for the video's callback destinations in the outbox, in the caller's transaction."""
