"""Indexes the operator console's pages need (their queries are the tables' repositories': `page_statement` of
app/videos/repository.py, `WebhookRepository.page` and `events_of`; migration 0009 creates them).

Declared here, beside the tables, so the models and the migrated schema stay identical (the drift test).
"""

from __future__ import annotations

from sqlalchemy import Index

from app.models.video import Video
from app.models.webhook_event import WebhookEvent

# The video table, newest first, paged by keyset on (created_at, id): one index per filter the console offers,
# each ending in (created_at, id) so a page is an index range scan in order, with no sort.
CONSOLE_INDEXES = (
    Index("ix_videos_created_at_id", Video.created_at, Video.id),
    Index("ix_videos_status_created_at_id", Video.status, Video.created_at, Video.id),
    Index("ix_videos_caller_id_created_at_id", Video.caller_id, Video.created_at, Video.id),
    # Stored webhook deliveries, newest first (keyset on (received_at, id)), and those of one video (timeline).
    Index("ix_webhook_events_received_at_id", WebhookEvent.received_at, WebhookEvent.id),
    Index("ix_webhook_events_video_id", WebhookEvent.video_id),
)
