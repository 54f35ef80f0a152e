"""Request-rate counters per API key, and the indexes the limits and usage queries need on `videos`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.video import Video


class KeyRequestWindow(Base):
    """One row per key: admitted requests in the current and the previous minute (a sliding window).

    Kept in Postgres rather than in process memory so that every API replica counts against the same
    limit; the row is locked only for the few statements of the check, never for a whole request.
    """

    __tablename__ = "key_request_windows"

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    # Start of the current minute, by the database's clock.
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    current_count: Mapped[int] = mapped_column(Integer, default=0)
    previous_count: Mapped[int] = mapped_column(Integer, default=0)
    # When the key was last admitted (shown to administrators as `last_used_at`).
    last_request_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Declared here (the limits package owns the queries that need them); they attach to the videos table.
# Usage and spend: a caller's videos in a time range.
Index("ix_videos_caller_id_created_at", Video.caller_id, Video.created_at)
# Concurrency: a caller's renders still running (a small, hot subset of the table).
Index(
    "ix_videos_caller_id_active",
    Video.caller_id,
    postgresql_where=text("status IN ('queued', 'in_progress')"),
)
