"""Callbacks to callers: their signing secrets, standing endpoints, the delivery outbox and its attempt log."""

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
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import StrEnumType


class DeliveryState(StrEnum):
    PENDING = "pending"  # due at next_attempt_at (also while an attempt is in flight: that is its lease)
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # every attempt of the schedule failed
    CANCELLED = "cancelled"  # its standing endpoint was removed before it could be delivered


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"
    HTTP_ERROR = "http_error"  # a non-2xx, non-3xx answer
    REDIRECT = "redirect"  # a 3xx: never followed, a failed attempt
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    REFUSED = "refused"  # the destination failed the SSRF checks at delivery time; nothing was sent


class CallbackSecret(Base):
    """One `whsec_` signing secret per caller, created on first need. After a rotation the previous one
    keeps signing too (a second `v1,` signature) until `previous_valid_until`, so receivers can switch."""

    __tablename__ = "callback_secrets"

    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackEndpoint(Base):
    """A standing destination: every event of the caller's videos goes there (besides a video's own URL)."""

    __tablename__ = "callback_endpoints"
    __table_args__ = (
        Index(
            "uq_callback_endpoints_live_url",
            "caller_id",
            "url",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackDelivery(Base):
    """The outbox: one row per (video, event, destination URL), written in the transaction that saw the event.

    `payload` is the exact body, fixed when the event happened, so every retry sends the same bytes under
    the same `webhook_id` (the receiver's idempotency key); only the timestamp and signature change.
    """

    __tablename__ = "callback_deliveries"
    __table_args__ = (
        UniqueConstraint("video_id", "event_type", "url"),
        CheckConstraint("state IN ('pending', 'delivered', 'failed', 'cancelled')", name="state_known"),
        Index("ix_callback_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index("ix_callback_deliveries_caller_id_id", "caller_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(50))
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id", ondelete="CASCADE"))
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str | None] = mapped_column(ForeignKey("callback_endpoints.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(StrEnumType(DeliveryState, 20), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackAttempt(Base):
    """The delivery log: one row per attempt, with the address actually connected to."""

    __tablename__ = "callback_attempts"
    __table_args__ = (
        # The pruner deletes the attempts of long-finished deliveries oldest first.
        Index("ix_callback_attempts_attempted_at", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("callback_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    address: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[AttemptOutcome] = mapped_column(StrEnumType(AttemptOutcome, 20))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
