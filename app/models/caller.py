"""Callers (internal services) and their API keys. Keys are stored only as SHA-256 digests.

A caller may carry its own limits (NULL = the `VG_LIMITS__*` default); a key may carry its own request
rate and an expiry. Both are read on every request, so an administrator's change applies at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base


class Caller(Base):
    __tablename__ = "callers"
    __table_args__ = (
        CheckConstraint("budget_period IN ('day', 'month')", name="budget_period_known"),
        CheckConstraint("requests_per_minute >= 1", name="requests_per_minute_positive"),
        CheckConstraint("max_concurrent_renders >= 0", name="max_concurrent_renders_not_negative"),
        CheckConstraint("budget_usd_per_period >= 0", name="budget_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Per-caller overrides of LimitSettings; NULL means "the default".
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrent_renders: Mapped[int | None] = mapped_column(Integer)
    budget_usd_per_period: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    budget_period: Mapped[str | None] = mapped_column(String(10))

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="caller", lazy="raise")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("requests_per_minute >= 1", name="requests_per_minute_positive"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id", ondelete="CASCADE"), index=True)
    # The first 16 hex chars of the key's SHA-256: an index to find the row. The full digest is then
    # compared in constant time, so lookup timing says nothing about how much of a guess was right.
    lookup: Mapped[str] = mapped_column(String(16), unique=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The first few characters of the plain key (`vg_AbCd`), so an operator can tell keys apart; far too
    # short to be of use to anyone holding it.
    prefix: Mapped[str] = mapped_column(String(16), server_default="", default="")
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Per-key override of the request rate (before the caller's and the default).
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)

    caller: Mapped[Caller] = relationship(back_populates="api_keys", lazy="raise")
