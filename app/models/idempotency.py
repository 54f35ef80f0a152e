"""`Idempotency-Key` records: one per caller and key, holding the claim and then the stored answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.types import StrEnumType


class IdempotencyState(StrEnum):
    IN_FLIGHT = "in_flight"  # claimed; the handler is running (or its process died while it ran)
    COMPLETED = "completed"  # the answer is stored and replayed to every repeat until `expires_at`


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("state IN ('in_flight', 'completed')", name="state_known"),
        CheckConstraint("(state = 'completed') = (response_status IS NOT NULL)", name="answer_when_completed"),
    )

    # The scope is the caller, not the API key: a caller's retry keeps its key across a key rotation, and
    # another caller presenting the same key string gets a record of its own.
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 (hex) of method, path, query and the normalised body (multipart by its parts, not its bytes).
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[IdempotencyState] = mapped_column(StrEnumType(IdempotencyState, 20))
    # Fences completion and release: only the request that made this claim may finish it.
    claim_token: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    # [[name, value], ...] as sent (latin-1 text), in order.
    response_headers: Mapped[list[Any] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
