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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class VideoOrigin(StrEnum):
    """How a video came to be: what the caller asked for (the wire shape keeps `remixed_from_video_id` for remixes)."""

    CREATE = "create"
    REMIX = "remix"
    EDIT = "edit"
    EXTENSION = "extension"


class VideoStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (VideoStatus.COMPLETED, VideoStatus.FAILED)


# Accepted, not yet sent upstream: waiting for its profile's capacity (admission control). The partial indexes'
# predicates, repeated by the queries that use them (app/archive/repository.py) so the planner picks them.
WAITING = "submitted_at IS NULL AND upstream_id IS NULL AND status = 'queued' AND deleted_at IS NULL"
# Sent upstream (or being sent) and not finished: what a profile's `max_concurrent` counts (deleted ones aside).
IN_FLIGHT = "submitted_at IS NOT NULL AND status IN ('queued', 'in_progress')"


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'in_progress', 'completed', 'failed')",
            name="status_known",
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_percent"),
        CheckConstraint("origin IN ('create', 'remix', 'edit', 'extension')", name="origin_known"),
        # Upstream ids are unique within one upstream, not across providers.
        UniqueConstraint("upstream_profile", "upstream_id"),
        # A caller's list, newest or oldest first.
        Index("ix_videos_caller_id_seq", "caller_id", "seq"),
        # Admission control (app/archive/admission.py): a profile's videos waiting for capacity, in arrival order;
        # its renders in flight; and its submissions in the rate window.
        Index("ix_videos_waiting", "upstream_profile", "seq", postgresql_where=text(WAITING)),
        Index("ix_videos_in_flight", "upstream_profile", postgresql_where=text(IN_FLIGHT)),
        Index("ix_videos_upstream_profile_submitted_at", "upstream_profile", "submitted_at"),
    )

    # Our own id (`video_<hex>`); callers never see the upstream id, so a second upstream can be added
    # without id clashes and ownership is checked on our ids only.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Insertion order for cursor pagination; created_at alone can tie.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id"))
    # NULL while the create is in flight upstream: the row is written before the paid call is made.
    upstream_id: Mapped[str | None] = mapped_column(String(200))
    # When the paid create (or remix) call started: with the row on the direct path; when the worker's `submit`
    # job sends it under admission control, NULL until then (the video is waiting). A row with this set and no
    # upstream id is a call whose answer we never got (app/archive/submissions.py); never sent a second time.
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    model: Mapped[str] = mapped_column(String(100))
    size: Mapped[str] = mapped_column(String(20))
    seconds: Mapped[str] = mapped_column(String(10))
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=VideoStatus.QUEUED.value)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    # The caller's video this one was made from (a remix's, edit's or extension's source); NULL for a create and
    # for an edit or extension of an uploaded MP4.
    remixed_from: Mapped[str | None] = mapped_column(ForeignKey("videos.id"))
    origin: Mapped[str] = mapped_column(String(20), server_default="create", default=VideoOrigin.CREATE.value)
    # What the render is charged for when it is not `seconds`: an extension renders only its new segment,
    # while its `seconds` is the stitched total. NULL: `seconds`.
    billed_seconds: Mapped[int | None] = mapped_column(Integer)
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
    # The model id sent to that profile's provider when it differs from `model` (a fallback rendered it, e.g.
    # `fal-ai/veo3.1` for `veo-3.1-generate-preview`); NULL: `model` itself. Callers only ever see `model`.
    upstream_model: Mapped[str | None] = mapped_column(String(100))
    # Where to tell the caller when it is archived or fails (validated against the allow-list at create).
    callback_url: Mapped[str | None] = mapped_column(Text)
    # A small string map the caller attached at create; echoed back on the video.
    caller_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSONB)

    @property
    def video_status(self) -> VideoStatus:
        return VideoStatus(self.status)

    @property
    def provider_model(self) -> str:
        """The model id its profile's provider knows: what every adapter call about this video must name."""
        return self.upstream_model or self.model
