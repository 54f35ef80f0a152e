"""The reconciler: archive every video even when webhooks are lost, late or never sent.

Each run (in every worker, every `reconcile_interval_seconds`) queues a `sync` for our non-terminal
videos that were not refreshed recently and for videos that orphan webhook events (deliveries that beat
our create row) now match, and `download`s for completed videos with an asset still pending and no live
job. Videos whose create was cut off before upstream answered (no upstream id after
`unsubmitted_after_seconds`) are looked for in upstream's list and adopted when exactly one render matches,
else settled as failed `upstream_submission_unknown`, so they stop holding the caller's concurrency slot and
the caller hears of them (app/archive/submissions.py). Videos waiting for their profile's capacity
(admission control, app/archive/admission.py) were never sent, so they are none of these; one whose `submit`
job was lost (a worker killed on the job's last attempt) gets a new one. Queue uniqueness makes concurrent
reconcilers on several workers harmless.
`run_janitor` aborts S3 multipart uploads abandoned by killed workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.archive.admission import enqueue_submit
from app.archive.service import enqueue_sync, schedule_downloads
from app.archive.submissions import resolve_cut_off_creates
from app.videos.repository import VideoRepository
from app.webhooks.repository import WebhookRepository

if TYPE_CHECKING:
    from app.archive.jobs import JobContext

logger = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True)
class ReconcileReport:
    syncs_queued: int
    downloads_queued: int
    submissions_settled: int = 0
    submissions_adopted: int = 0
    submits_queued: int = 0


async def reconcile_once(
    context: JobContext,
    *,
    since: datetime | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ReconcileReport:
    """One pass; `since` widens (or narrows) the window of videos looked at (operators' `reconcile --since`).
    `on_progress(looked_at, None)` hears how many videos were looked at so far (the CLI's progress display)."""
    settings = context.settings.worker
    now = datetime.now(UTC)
    syncs = downloads = submits = 0
    looked_at = 0

    def looked(count: int = 1) -> None:
        nonlocal looked_at
        looked_at += count
        if on_progress is not None:
            on_progress(looked_at, None)

    async with context.database.transaction() as session:
        repository = VideoRepository.from_session(session)
        stale = await repository.videos_to_reconcile(
            stale_before=now - timedelta(seconds=settings.reconcile_interval_seconds),
            created_after=since or now - timedelta(seconds=settings.sync_horizon_seconds),
            limit=BATCH,
        )
        for video in stale:
            syncs += await enqueue_sync(session, video=video, settings=settings) is not None
            looked()
        matched = await WebhookRepository.from_session(session).match_orphan_events(limit=BATCH)
        for video in await repository.by_ids(sorted(matched)):
            syncs += await enqueue_sync(session, video=video, settings=settings) is not None
            looked()
        for video in await repository.completed_videos_missing_assets(limit=BATCH):
            downloads += await schedule_downloads(session, video=video, settings=context.settings)
            looked()
        for video in await repository.waiting_without_submit_job(limit=BATCH):
            submits += await enqueue_submit(session, video_id=video.id, settings=settings) is not None
            looked()
        unsubmitted = await repository.unsubmitted_videos(
            submitted_before=now - timedelta(seconds=settings.unsubmitted_after_seconds), limit=BATCH
        )
        cut_off = await resolve_cut_off_creates(
            session, videos=unsubmitted, upstreams=context.upstreams, settings=context.settings
        )
        looked(len(unsubmitted))
    if syncs or downloads:
        logger.info("reconciled: %d sync(s) and %d download(s) queued", syncs, downloads)
    if submits:
        logger.warning("reconciled: %d waiting create(s) had lost their submit job; queued again", submits)
    if cut_off.settled:
        logger.warning(
            "reconciled: %d create(s) cut off before upstream answered and not found upstream, failed as unknown",
            cut_off.settled,
        )
    return ReconcileReport(
        syncs_queued=syncs,
        downloads_queued=downloads,
        submissions_settled=cut_off.settled,
        submissions_adopted=cut_off.adopted,
        submits_queued=submits,
    )


async def run_janitor(context: JobContext) -> int:
    """Abort multipart uploads older than `stale_upload_seconds` (their worker died mid-upload)."""
    aborted = await context.storage.abort_stale_uploads(
        older_than=timedelta(seconds=context.settings.worker.stale_upload_seconds)
    )
    if aborted:
        logger.info("janitor: aborted %d abandoned multipart upload(s)", aborted)
    return aborted
