"""Receiving a verified upstream event: record it once, and queue the video's re-read in the same transaction.

The event carries only an id, so nothing here trusts its `type` beyond routing: a video event (OpenAI's
`video.completed` / `video.failed`, Gemini's `video.generated`) queues a sync job, and the worker re-reads
the video upstream before acting. An event that names no video (Gemini's) queues a sync for each of the
profile's unfinished videos instead. This path makes no upstream or S3 call, so it answers in milliseconds
and fails only when the database does.

The common case, an event that names one video, is ONE statement (`queue.record_video_event`, decision 009):
find the video, record the delivery with its outcome, queue its sync job, carrying the request id as a
parameter. It runs alone on the driver (`Database.fetch_alone`, decision 012): one statement is atomic, so BEGIN
and COMMIT would be two round trips that guard nothing, and a session and the ORM would cost more than the round
trip itself. The other cases (ignored types, an event that names no video) keep a stamped transaction (decision
005) and the repositories.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import queue
from app.archive import service as archive_service
from app.archive.wakeup import WakeUps
from app.core.config import DEFAULT_PROFILE, WorkerSettings
from app.core.db import Database
from app.core.logging import current_request_id, stamp_transaction
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
    database: Database,
    *,
    event: DeliveredEvent,
    worker: WorkerSettings,
    profile: str = DEFAULT_PROFILE,
    video_events: frozenset[str] = OPENAI_VIDEO_EVENTS,
    upstream_ids: Sequence[str] | None = None,
    wake: WakeUps | None = None,
) -> Receipt:
    """Record the delivery (once per webhook id and per event id) and act on it only if it is new.

    Known video → its sync job is queued (`enqueued`); unknown upstream id → `orphan`, matched later by the
    reconciler (the webhook may beat the commit of our create); a deleted video or any other type → `ignored`,
    acknowledged so the sender stops retrying. The row and its jobs are durable together when this returns: in
    one statement for an event that names a video, else in one transaction. `upstream_ids` are the ids the
    event's object may have in this profile (default: exactly `object_id`). `wake` is told when a sync job that is
    due now was queued, to wake an idle worker (a sync queued for unnamed events waits a moment anyway).
    """
    if event.type in video_events and event.object_id is not None:
        receipt = await _receive_video_event(
            database,
            event=event,
            object_id=event.object_id,
            worker=worker,
            profile=profile,
            upstream_ids=[event.object_id] if upstream_ids is None else upstream_ids,
        )
        if wake is not None and receipt.outcome is EventOutcome.ENQUEUED:
            wake.soon()
        return receipt
    async with database.transaction() as session:
        return await _receive_other_event(
            session, event=event, worker=worker, profile=profile, video_events=video_events
        )


async def _receive_other_event(
    session: AsyncSession, *, event: DeliveredEvent, worker: WorkerSettings, profile: str, video_events: frozenset[str]
) -> Receipt:
    """An ignored type, or a video event that names no video, recorded in the caller's transaction."""
    # The stored event and its sync jobs remember this request's id, for the worker's log lines.
    await stamp_transaction(session)
    to_sync: Sequence[Video] = ()
    if event.type in video_events:
        # Names no video: every unfinished one of this profile may be the one that finished.
        to_sync = await VideoRepository.from_session(session).unfinished_videos(profile=profile, limit=HINT_BATCH)
        outcome = EventOutcome.ENQUEUED if to_sync else EventOutcome.IGNORED
    else:
        outcome = EventOutcome.IGNORED
    inserted = await WebhookRepository.from_session(session).record(
        webhook_id=event.webhook_id,
        event_id=event.event_id,
        event_type=event.type,
        upstream_profile=profile,
        upstream_video_id=None,  # an ignored type's object is not looked at; an unnamed event names none
        video_id=None,
        outcome=outcome,
        body=event.body,
    )
    if not inserted:
        _log_duplicate(event)
        return Receipt(duplicate=True, outcome=None)
    for unfinished in to_sync:
        # Queued a moment ahead: the hints of a burst (one per finished render, each naming none) then land
        # on the same queued job per video instead of each starting a re-read of every unfinished video.
        await archive_service.enqueue_sync(
            session, video=unfinished, settings=worker, delay_seconds=HINT_SYNC_DELAY_SECONDS
        )
    _log_recorded(event, outcome)
    return Receipt(duplicate=False, outcome=outcome)


async def _receive_video_event(
    database: Database,
    *,
    event: DeliveredEvent,
    object_id: str,
    worker: WorkerSettings,
    profile: str,
    upstream_ids: Sequence[str],
) -> Receipt:
    """An event that names one video: the lookup, the row with its outcome and the sync job in one statement.

    Known video → `enqueued` and its sync job (unless one is already active); unknown upstream id → `orphan`; a
    deleted video → `ignored`. The row stores the video's own upstream id when it is known (fal's event names
    only part of it). A duplicate writes nothing, job included.
    """
    # Autocommitted: when it returns its rows are committed, so the 2xx still follows a durable row.
    recorded = await queue.record_video_event(
        database,
        webhook_id=event.webhook_id,
        event_id=event.event_id,
        event_type=event.type,
        profile=profile,
        object_id=object_id,
        upstream_ids=upstream_ids,
        body=event.body,
        referenced_video_id=event.referenced_video_id,
        # Explicit, not `stamp_transaction`'s setting: there may be no transaction to stamp (decision 009).
        request_id=current_request_id(),
        max_attempts=worker.max_attempts,
        sync_horizon_seconds=worker.sync_horizon_seconds,
    )
    if recorded is None:
        _log_duplicate(event)
        return Receipt(duplicate=True, outcome=None)
    outcome = EventOutcome(recorded.outcome)
    _log_recorded(event, outcome)
    return Receipt(duplicate=False, outcome=outcome)


def _log_duplicate(event: DeliveredEvent) -> None:
    logger.info("webhook %s (event %s, %s) is a duplicate", event.webhook_id, event.event_id, event.type)


def _log_recorded(event: DeliveredEvent, outcome: EventOutcome) -> None:
    logger.info(
        "webhook %s (event %s, %s, %s) recorded as %s",
        event.webhook_id,
        event.event_id,
        event.type,
        event.object_id,
        outcome.value,
    )


async def recent_deliveries(session: AsyncSession, *, limit: int, outcome: str | None = None) -> Sequence[WebhookEvent]:
    return await WebhookRepository.from_session(session).recent(limit=limit, outcome=outcome)
