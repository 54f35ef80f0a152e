"""Characters a caller made (`POST /v1/videos/characters`): our own id, its owner, and where it lives upstream."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class Character(Base):
    __tablename__ = "characters"
    __table_args__ = (
        UniqueConstraint("upstream_profile", "upstream_id"),
        Index("ix_characters_caller_id_seq", "caller_id", "seq"),
    )

    # `char_<hex>`: callers see only ours, as with videos, so ownership is checked on our ids.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id"))
    name: Mapped[str] = mapped_column(String(80))
    upstream_profile: Mapped[str] = mapped_column(String(100))
    upstream_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
