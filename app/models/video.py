"""Videos as the gateway knows them: owner, upstream id, the request, and the last state seen upstream."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class VideoStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (VideoStatus.COMPLETED, VideoStatus.FAILED)


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'in_progress', 'completed', 'failed')",
            name="status_known",
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_percent"),
        # Upstream ids are unique within one upstream, not across providers.
        UniqueConstraint("upstream_profile", "upstream_id"),
        # A caller's list, newest or oldest first.
        Index("ix_videos_caller_id_seq", "caller_id", "seq"),
    )

    # Our own id (`video_<hex>`); callers never see the upstream id, so a second upstream can be added
    # without id clashes and ownership is checked on our ids only.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Insertion order for cursor pagination; created_at alone can tie.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id"))
    # NULL while the create is in flight upstream: the row is written before the paid call is made.
    upstream_id: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(100))
    size: Mapped[str] = mapped_column(String(20))
    seconds: Mapped[str] = mapped_column(String(10))
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=VideoStatus.QUEUED.value)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    remixed_from: Mapped[str | None] = mapped_column(ForeignKey("videos.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the state was last read from upstream; bounds how often a retrieve goes upstream.
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which upstream profile rendered it (several upstreams); "default" is `VG_UPSTREAM__*`.
    upstream_profile: Mapped[str] = mapped_column(String(100), server_default="default", default="default")
    # Where to tell the caller when it is archived or fails (validated against the allow-list at create).
    callback_url: Mapped[str | None] = mapped_column(Text)
    # A small string map the caller attached at create; echoed back on the video.
    caller_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSONB)

    @property
    def video_status(self) -> VideoStatus:
        return VideoStatus(self.status)
