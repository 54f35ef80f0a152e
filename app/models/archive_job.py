"""Archive jobs: the Postgres queue. Its SQL lives in `app/archive/queries.sql`; this is the table only."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import StrEnumType


class JobKind(StrEnum):
    SYNC = "sync"  # re-read the video upstream; on completion enqueue its downloads, on failure record why
    DOWNLOAD = "download"  # stream one variant to S3
    SUBMIT = "submit"  # send a waiting create upstream once its profile has capacity (app/archive/admission.py)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a terminal, recorded failure (e.g. the asset was not what it claimed)
    EXPIRED = "expired"  # the deadline passed first
    DEAD = "dead"  # attempts exhausted (including lapsed leases)


ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)

# The request id of the transaction inserting the row (`app.core.logging.stamp_transaction` sets it), so the
# worker's log lines for a job carry the id of the request that caused it. NULL when none was set.
REQUEST_ID_DEFAULT = text("nullif(current_setting('vg.request_id', true), '')")


class ArchiveJob(Base):
    __tablename__ = "archive_jobs"
    __table_args__ = (
        CheckConstraint("kind IN ('sync', 'download', 'submit')", name="kind_known"),
        CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed', 'expired', 'dead')", name="state_known"),
        CheckConstraint("(kind = 'download') = (variant IS NOT NULL)", name="variant_for_downloads"),
        # One live job per (kind, video, variant): enqueueing twice, even concurrently, makes one row.
        Index(
            "uq_archive_jobs_active",
            "kind",
            "video_id",
            text("coalesce(variant, '')"),
            unique=True,
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
        # The claim scans runnable jobs by time.
        Index("ix_archive_jobs_runnable", "run_after", postgresql_where=text("state = 'queued'")),
        Index("ix_archive_jobs_leases", "lease_until", postgresql_where=text("state = 'running'")),
        # The pruner (app/archive/pruner.py) deletes finished jobs oldest first; never queued or running ones.
        Index(
            "ix_archive_jobs_prunable",
            "finished_at",
            postgresql_where=text("state IN ('succeeded', 'failed', 'expired', 'dead')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[JobKind] = mapped_column(StrEnumType(JobKind, 20))
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    variant: Mapped[str | None] = mapped_column(String(20))
    state: Mapped[JobState] = mapped_column(StrEnumType(JobState, 20), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str | None] = mapped_column(String(64), server_default=REQUEST_ID_DEFAULT)
