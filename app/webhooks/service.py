"""Receiving a verified upstream event: record it once, and queue the video's re-read in the same transaction.

The event carries only an id, so nothing here trusts its `type` beyond routing: a video event (OpenAI's
`video.completed` / `video.failed`, Gemini's `video.generated`) queues a sync job, and the worker re-reads
the video upstream before acting. An event that names no video (Gemini's) queues a sync for each of the
profile's unfinished videos instead. This path makes no upstream or S3 call, so it answers in milliseconds
and fails only when the database does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import service as archive_service
from app.core.config import DEFAULT_PROFILE, WorkerSettings
from app.core.logging import stamp_transaction
from app.models import EventOutcome, Video, WebhookEvent
from app.videos.repository import VideoRepository
from app.webhooks.repository import WebhookRepository
from app.webhooks.schemas import OPENAI_VIDEO_EVENTS, DeliveredEvent

logger = logging.getLogger(__name__)

# How many unfinished videos one unnamed event re-reads at once; the reconciler polls the rest.
HINT_BATCH: Final = 500
HINT_SYNC_DELAY_SECONDS: Final = 1.0


@dataclass(frozen=True)
class Receipt:
    duplicate: bool
    outcome: EventOutcome | None  # None for a duplicate: the first delivery's outcome stands


async def receive(
    session: AsyncSession,
    *,
    event: DeliveredEvent,
    worker: WorkerSettings,
    profile: str = DEFAULT_PROFILE,
    video_events: frozenset[str] = OPENAI_VIDEO_EVENTS,
    upstream_ids: Sequence[str] | None = None,
) -> Receipt:
    """Record the delivery (once per webhook id and per event id) and act on it only if it is new.

    Known video → its sync job is queued (`enqueued`); unknown upstream id → `orphan`, matched later by the
    reconciler (the webhook may beat the commit of our create); any other type → `ignored`, acknowledged so
    the sender stops retrying. Everything runs on the caller's session: the row and the job commit together.
    `upstream_ids` are the ids the event's object may have in this profile (default: exactly `object_id`).
    """
    # The stored event and its sync job remember this request's id, for the worker's log lines.
    await stamp_transaction(session)
    videos = VideoRepository.from_session(session)
    video: Video | None = None
    to_sync: Sequence[Video] = ()
    if event.type in video_events and event.object_id is None:
        # Names no video: every unfinished one of this profile may be the one that finished.
        to_sync = await videos.unfinished_videos(profile=profile, limit=HINT_BATCH)
        outcome = EventOutcome.ENQUEUED if to_sync else EventOutcome.IGNORED
    elif event.type in video_events and event.object_id is not None:
        # Looked up before the insert so the row is written once with its final outcome; a duplicate pays one
        # indexed read and acts on nothing.
        video = await videos.by_upstream_ids(
            [event.object_id] if upstream_ids is None else upstream_ids, profile=profile
        )
        if video is None:
            outcome = EventOutcome.ORPHAN
        elif video.deleted_at is not None:
            outcome = EventOutcome.IGNORED  # the caller deleted it: nothing to archive
        else:
            outcome = EventOutcome.ENQUEUED
    else:
        outcome = EventOutcome.IGNORED
    inserted = await WebhookRepository.from_session(session).record(
        webhook_id=event.webhook_id,
        event_id=event.event_id,
        event_type=event.type,
        upstream_profile=profile,
        # The video's own upstream id when it is known (fal's event names only part of it).
        upstream_video_id=(video.upstream_id if video is not None else event.object_id)
        if event.type in video_events
        else None,
        video_id=video.id if video is not None else None,
        outcome=outcome,
        body=event.body,
    )
    if not inserted:
        logger.info("webhook %s (event %s, %s) is a duplicate", event.webhook_id, event.event_id, event.type)
        return Receipt(duplicate=True, outcome=None)
    if outcome is EventOutcome.ENQUEUED and video is not None:
        await archive_service.enqueue_sync(session, video=video, settings=worker)
    for unfinished in to_sync:
        # Queued a moment ahead: the hints of a burst (one per finished render, each naming none) then land
        # on the same queued job per video instead of each starting a re-read of every unfinished video.
        await archive_service.enqueue_sync(
            session, video=unfinished, settings=worker, delay_seconds=HINT_SYNC_DELAY_SECONDS
        )
    logger.info(
        "webhook %s (event %s, %s, %s) recorded as %s",
        event.webhook_id,
        event.event_id,
        event.type,
        event.object_id,
        outcome.value,
    )
    return Receipt(duplicate=False, outcome=outcome)


async def recent_deliveries(session: AsyncSession, *, limit: int, outcome: str | None = None) -> Sequence[WebhookEvent]:
    return await WebhookRepository.from_session(session).recent(limit=limit, outcome=outcome)
