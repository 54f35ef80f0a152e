"""Archived assets: one row per video and variant, with its S3 location, size and checksum, and when the
integrity audit (app/archive/audit.py) last found its object intact."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import StrEnumType


class Variant(StrEnum):
    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"

    @property
    def extension(self) -> str:
        return {"video": "mp4", "thumbnail": "webp", "spritesheet": "jpg"}[self.value]

    @property
    def content_type(self) -> str:
        return {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}[self.value]


class AssetState(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    ARCHIVED = "archived"
    FAILED = "failed"
    EXPIRED = "expired"
    # Was archived, then its object went missing or bad in S3 while upstream no longer had it: the audit's
    # verdict, never served, never retried on its own (a replay retries it should upstream have it again).
    LOST = "lost"


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("video_id", "variant"),
        CheckConstraint("variant IN ('video', 'thumbnail', 'spritesheet')", name="variant_known"),
        CheckConstraint(
            "state IN ('pending', 'downloading', 'archived', 'failed', 'expired', 'lost')", name="state_known"
        ),
        # The audit's batch: archived objects, least recently checked first (never checked ones before all).
        Index(
            "ix_assets_audit_due",
            text("audited_at NULLS FIRST"),
            postgresql_where=text("state = 'archived'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(String(20))
    state: Mapped[AssetState] = mapped_column(StrEnumType(AssetState, 20), default=AssetState.PENDING)
    s3_key: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(100))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # When the audit last found the object present with the recorded size; NULL: never checked yet.
    audited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
