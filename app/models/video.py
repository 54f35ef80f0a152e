"""Videos as the gateway knows them: owner, upstream id, the request, and the last state seen upstream.

Also the rules of a video's status, as plain values (no upstream or domain types): the status only moves
forward, queued → in_progress → completed | failed, and a terminal status never changes again, because
webhooks are unordered and polls race them. `Video.advance` and `Video.fail` apply them; every status change
after the create goes through `app.archive.lifecycle`, which calls them and queues the callback each one owes.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Final

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
from app.models.types import StrEnumType

logger = logging.getLogger(__name__)


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


# How far along a status is: a video never moves to a lower rank (webhooks and polls arrive in any order).
STATUS_RANK: Final[dict[VideoStatus, int]] = {
    VideoStatus.QUEUED: 0,
    VideoStatus.IN_PROGRESS: 1,
    VideoStatus.COMPLETED: 2,
    VideoStatus.FAILED: 2,
}

# Error codes the gateway itself gives a failed video (upstream's own codes are copied as they come).
# A create that may have reached upstream but whose answer we never got: kept failed (and billable, since it may
# be rendering), never re-sent blindly; the limits count it like a render.
SUBMISSION_UNKNOWN: Final = "upstream_submission_unknown"
# Upstream answered 404 for a video that had not finished here.
UPSTREAM_NOT_FOUND: Final = "upstream_not_found"
# A waiting video (admission control) its caller deleted before it was sent: neither billed nor counted in flight.
DELETED_BEFORE_SUBMISSION: Final = "deleted_before_submission"
# Upstream said failed without saying why.
UPSTREAM_FAILED: Final = "upstream_failed"
UPSTREAM_FAILED_MESSAGE: Final = "The render failed upstream."

# Providers that report no progress (most live ones) get one synthesized from the time since the create:
# it rises quickly at first and approaches, never reaches, the ceiling, so it only ever moves forward and
# never claims a finished render. TIME_CONSTANT is about a typical render's length.
SYNTHETIC_CEILING: Final = 95
SYNTHETIC_TIME_CONSTANT_SECONDS: Final = 60.0


# Accepted, not yet sent upstream: waiting for its profile's capacity (admission control). The partial indexes'
# predicates, repeated by the queries that use them (app/videos/repository.py) so the planner picks them.
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
    status: Mapped[VideoStatus] = mapped_column(StrEnumType(VideoStatus, 20), default=VideoStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    # The caller's video this one was made from (a remix's, edit's or extension's source); NULL for a create and
    # for an edit or extension of an uploaded MP4.
    remixed_from: Mapped[str | None] = mapped_column(ForeignKey("videos.id"))
    origin: Mapped[VideoOrigin] = mapped_column(
        StrEnumType(VideoOrigin, 20), server_default="create", default=VideoOrigin.CREATE
    )
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
    def provider_model(self) -> str:
        """The model id its profile's provider knows: what every adapter call about this video must name."""
        return self.upstream_model or self.model

    # ----- status rules (called by app.archive.lifecycle only) -------------------------------------------

    def synthesized_progress(self, *, now: datetime) -> int:
        """A progress for a provider that reports none, from the time since upstream got the render."""
        # From when upstream got the render: a create that waited its turn (admission control) starts at 0.
        started = self.submitted_at or self.created_at
        elapsed = max((now - started).total_seconds(), 0.0) if started is not None else 0.0
        return int(SYNTHETIC_CEILING * (1 - math.exp(-elapsed / SYNTHETIC_TIME_CONSTANT_SECONDS)))

    def advance(
        self,
        status: str,
        *,
        progress: int | None,
        completed_at: datetime | None,
        expires_at: datetime | None,
        error_code: str | None,
        error_message: str | None,
        now: datetime,
    ) -> VideoStatus:
        """Take upstream's view of the render, never moving backwards and never changing a terminal status.

        Returns the status the video had before, so the caller can act on a transition exactly once. An unknown
        status is logged and changes nothing but `refreshed_at` (the video was read upstream all the same).
        """
        self.refreshed_at = now
        current = self.status
        try:
            incoming = VideoStatus(status)
        except ValueError:
            logger.warning("upstream reported unknown status %r for %s", status, self.id)
            return current
        if current.is_terminal:
            # Settled once: a later answer (a provider that re-dates its "done" on every poll) changes nothing.
            return current
        if STATUS_RANK[incoming] < STATUS_RANK[current]:
            return current
        self.status = incoming
        if progress is None and incoming is VideoStatus.IN_PROGRESS:
            progress = self.synthesized_progress(now=now)
        self.progress = 100 if incoming is VideoStatus.COMPLETED else max(self.progress, progress or 0)
        self.completed_at = completed_at or self.completed_at
        self.expires_at = expires_at or self.expires_at
        if incoming is VideoStatus.FAILED:
            self.error_code = error_code or UPSTREAM_FAILED
            self.error_message = error_message or UPSTREAM_FAILED_MESSAGE
        return current

    def fail(self, code: str, message: str) -> bool:
        """Fail the video with our own error; True only when this call failed it (a terminal video stays as is)."""
        if self.status.is_terminal:
            return False
        self.status = VideoStatus.FAILED
        self.error_code = code
        self.error_message = message
        return True
