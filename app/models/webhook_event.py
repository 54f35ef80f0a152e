"""Inbound webhook deliveries, stored once per `webhook-id` (and once per event `id`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.archive_job import REQUEST_ID_DEFAULT
from app.models.types import StrEnumType


class EventOutcome(StrEnum):
    ENQUEUED = "enqueued"  # a known video: its sync job is queued
    ORPHAN = "orphan"  # no video of ours has this upstream id (yet); the reconciler matches it later
    IGNORED = "ignored"  # an event type we do not act on, acknowledged so the sender stops retrying
    MATCHED = "matched"  # an orphan later matched to a video by the reconciler


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        # Deduplication: the delivery id, and the event id (a sender may re-send one event under a new id).
        Index("uq_webhook_events_event_id", "event_id", unique=True, postgresql_where=text("event_id IS NOT NULL")),
        Index(
            "ix_webhook_events_orphans",
            "upstream_video_id",
            postgresql_where=text("outcome = 'orphan'"),
        ),
        # The pruner deletes old events oldest first; orphans (the reconciler may still match them) stay.
        Index(
            "ix_webhook_events_prunable",
            "received_at",
            postgresql_where=text("outcome IN ('enqueued', 'ignored', 'matched')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[str] = mapped_column(String(200), unique=True)
    event_id: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    # Which upstream profile's endpoint received it; ids are only unique within one upstream.
    upstream_profile: Mapped[str] = mapped_column(String(100), server_default="default", default="default")
    upstream_video_id: Mapped[str | None] = mapped_column(String(200))
    # The video it was applied to; on an orphan, the video its callback URL's reference names, if any (checked by
    # its tag, app/upstream/reference.py, and confirmed only when the reconciler adopts the render for it).
    video_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[EventOutcome] = mapped_column(StrEnumType(EventOutcome, 20))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The receiving request's id (X-Request-ID), set by the database from the transaction (see ArchiveJob).
    request_id: Mapped[str | None] = mapped_column(String(64), server_default=REQUEST_ID_DEFAULT)
