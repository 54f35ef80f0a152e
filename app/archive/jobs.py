"""What one archive job does: `sync` re-reads a video upstream, `download` streams one asset to S3, `submit`
sends a create that waited for its profile's capacity (admission control: the policy is app/archive/admission.py).

Every write a job makes is fenced by its lease: each transaction first renews the lease (`heartbeat`, a
row lock on the job until commit) and writes nothing if the lease is gone. Network I/O (upstream, S3)
happens outside transactions. Failures are classified by what they prove: transient ones retry with
jittered backoff that never runs past the job's deadline; a deadline that passes makes the asset `expired`
with the reason; exhausted attempts make it `failed`.

A download of an asset that is archived already (a replay) is a re-download: the asset stays `archived`, and
its copy served, while the job is pending, running or retrying; a failure leaves the copy in place with a note
in `error`; only a new copy, once whole in S3, replaces it (same key, one step).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import admission, queue
from app.archive import service as archive_service
from app.archive.derive import DerivationFailed, derive_image
from app.archive.queue import ClaimedJob
from app.archive.repository import ArchiveRepository
from app.archive.storage import ArchiveStorage, AssetRejected, IncompleteAsset, StorageError, StoredObject
from app.core import metrics, retry
from app.core.config import Settings
from app.core.db import Database, run_without_transaction
from app.core.errors import GatewayError, RateLimited, ResourceNotFound, UpstreamError
from app.core.logging import stamp_transaction
from app.models import AssetState, JobKind, JobState, Variant, Video, VideoStatus
from app.upstream.client import UpstreamRejected, render_may_have_started
from app.upstream.router import UpstreamRouter
from app.upstream.schemas import UpstreamVideo
from app.videos.repository import VideoRepository

logger = logging.getLogger(__name__)

STREAM_CHUNK = 1024 * 1024
# Content answers that mean "gone" rather than "try again".
GONE_STATUSES = (403, 404, 410)
# The note on an archived asset whose re-download gave up (its `error`; the copy is still served).
REDOWNLOAD_FAILED = "re-download failed, the archived copy is kept"


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    database: Database
    upstreams: UpstreamRouter
    storage: ArchiveStorage


class LeaseLost(Exception):
    """Another worker holds this job now; whatever we were doing is abandoned without a write."""


def job_retry_delay(job: ClaimedJob, *, base: float, cap: float, now: datetime) -> float | None:
    """Seconds until the next attempt, or None when no attempt fits before the deadline. The backoff is
    exponential with equal jitter (app/core/retry.py): retries spread but still wait, the first about `base`."""
    delay = retry.equal_jitter(job.attempts - 1, base=base, cap=cap)
    if job.deadline is None:
        return delay
    remaining = (job.deadline - now).total_seconds()
    if remaining <= 1:
        return None
    # Never schedule past the deadline: squeeze the wait into what is left of the window.
    return min(delay, remaining / 2)


async def run_job(context: JobContext, job: ClaimedJob) -> None:
    try:
        if job.kind is JobKind.SYNC:
            await run_sync(context, job)
        elif job.kind is JobKind.SUBMIT:
            await run_submit(context, job)
        else:
            await run_download(context, job)
    except LeaseLost:
        logger.warning("job %s: lease lost to another worker; abandoned", job.id)


# ----- sync ---------------------------------------------------------------------------------------


async def run_sync(context: JobContext, job: ClaimedJob) -> None:
    """Re-read the video upstream (webhooks are thin and unordered) and act on what it says now."""
    video = await _load_video(context, job.video_id)
    if video is None or video.deleted_at is not None or video.upstream_id is None:
        await _finish(context, job, JobState.SUCCEEDED, "nothing to sync: no such live video")
        return
    try:
        upstream = await context.upstreams.adapter(video.upstream_profile).retrieve_video(video.upstream_id)
    except ResourceNotFound:
        async with _fenced(context, job) as session:
            current = await VideoRepository.from_session(session).get(job.video_id)
            if current is not None:
                await archive_service.settle_gone_upstream(session, video=current, settings=context.settings)
            await queue.finish(session, job, state=JobState.FAILED, error="upstream answered 404 for the video")
        return
    except GatewayError as exc:
        await _retry(context, job, error=f"upstream read failed: {exc.message}", exc=exc)
        return

    async with _fenced(context, job) as session:
        current = await VideoRepository.from_session(session).get(job.video_id)
        if current is None:
            await queue.finish(session, job, state=JobState.SUCCEEDED, error="video vanished")
            return
        await stamp_transaction(session)  # the downloads queued now keep the request id of this sync
        await archive_service.record_upstream_state(
            session, video=current, upstream=upstream, settings=context.settings
        )
        note = None
        if current.status is VideoStatus.FAILED:
            note = f"render failed upstream: {current.error_code}"
        else:
            # Trust the GET over the event: not finished yet; the reconciler keeps polling it.
            note = f"upstream still says {current.status}"
        await queue.finish(session, job, state=JobState.SUCCEEDED, error=note)


# ----- submit (admission control) -----------------------------------------------------------------


async def run_submit(context: JobContext, job: ClaimedJob) -> None:
    """Send a waiting create upstream once it is first in its profile's line and the profile has room.

    The gate (first in line, renders in flight, creates within the rate window) is judged under the profile's
    advisory lock, and `submitted_at` committed, before the paid call: a crash past that point leaves a row
    nothing sends again. No room: the job is handed back, its attempt not counted.
    """
    video = await _load_video(context, job.video_id)
    if (note := admission.not_to_submit(video)) is not None:
        await _finish(context, job, JobState.SUCCEEDED, f"nothing to submit: {note}")
        return
    assert video is not None
    try:
        limits = admission.ProfileLimits.of(context.settings.upstream_profile(video.upstream_profile))
    except KeyError:
        await _fail_unsent(
            context,
            job,
            code="upstream_profile_unknown",
            message="The upstream this video was accepted for is no longer configured; it was never sent.",
        )
        return

    async with _fenced(context, job) as session:
        await ArchiveRepository.from_session(session).lock_admission_gate(video.upstream_profile)
        videos = VideoRepository.from_session(session)
        current = await videos.lock(job.video_id)
        if (note := admission.not_to_submit(current)) is not None:
            await queue.finish(session, job, state=JobState.SUCCEEDED, error=f"nothing to submit: {note}")
            await _wake_next(session, video.upstream_profile)
            return
        assert current is not None
        # Limits removed from the configuration since it was accepted: no gate, it goes now.
        if limits is not None:
            wait = admission.verdict(await _capacity(videos, current, limits), limits)
            if wait is not None:
                await queue.defer(session, job, delay_seconds=wait.seconds, reason=wait.reason)
                return
        await videos.mark_submitted(current.id, submitted=True)
        # The next in line may be able to go too (another slot of the window, another render): let it look now.
        await _wake_next(session, current.upstream_profile)
        command = admission.command_for(current, await ArchiveRepository.from_session(session).video_input(current.id))

    try:
        upstream = await context.upstreams.adapter(video.upstream_profile).create_video(command)
    except GatewayError as exc:
        await _submission_failed(context, job, exc)
        return
    await _submission_succeeded(context, job, video.upstream_profile, upstream)


async def _capacity(repository: VideoRepository, video: Video, limits: admission.ProfileLimits) -> admission.Capacity:
    profile = video.upstream_profile
    ahead = await repository.waiting_count(profile, before_seq=video.seq)
    if ahead:
        return admission.Capacity(ahead=ahead, in_flight=0, recent_ages=())
    in_flight = await repository.in_flight(profile) if limits.max_concurrent is not None else 0
    ages: list[float] = []
    if limits.max_rpm is not None:
        ages = await repository.recent_submission_ages(
            profile, within_seconds=limits.counted_window_seconds, limit=limits.max_rpm
        )
    return admission.Capacity(ahead=0, in_flight=in_flight, recent_ages=ages)


async def _wake_next(session: AsyncSession, profile: str) -> None:
    if (next_id := await VideoRepository.from_session(session).oldest_waiting(profile)) is not None:
        await queue.wake_submit(session, video_id=next_id)


async def _submission_succeeded(context: JobContext, job: ClaimedJob, profile: str, upstream: UpstreamVideo) -> None:
    """Record the render upstream started; if the caller deleted the video meanwhile, delete it upstream too."""
    try:
        async with _fenced(context, job) as session:
            await stamp_transaction(session)  # the downloads this may queue keep the id of the create's request
            deleted = await _record_submission(context, session, job.video_id, upstream)
            await queue.finish(session, job, state=JobState.SUCCEEDED)
    except LeaseLost:
        # The render exists and only this process knows its id; no other job can have sent this video (its
        # `submitted_at` stops them), so recording the id is safe without the lease, and saves the reconciler a
        # search of upstream's list.
        async with context.database.transaction() as session:
            deleted = await _record_submission(context, session, job.video_id, upstream)
        logger.warning("job %s: lease lost after upstream accepted the create; its id is recorded anyway", job.id)
    if deleted:
        with contextlib.suppress(GatewayError):
            await context.upstreams.adapter(profile).delete_video(upstream.id)


async def _record_submission(
    context: JobContext, session: AsyncSession, video_id: str, upstream: UpstreamVideo
) -> bool:
    """Fold upstream's answer into the video; True when the caller deleted the video while it was being sent."""
    current = await VideoRepository.from_session(session).lock(video_id)
    if current is None or current.upstream_id is not None:
        return False
    current.upstream_id = upstream.id
    await archive_service.record_upstream_state(session, video=current, upstream=upstream, settings=context.settings)
    await ArchiveRepository.from_session(session).drop_video_input(video_id)
    logger.info("submitted %s upstream as %s (%s)", video_id, upstream.id, current.upstream_profile)
    return current.deleted_at is not None


async def _submission_failed(context: JobContext, job: ClaimedJob, exc: GatewayError) -> None:
    """Settle a create upstream did not accept, by what its failure proves."""
    if render_may_have_started(exc):
        # Sent, answer lost: it may be rendering (and billed). Never sent again; failed as unknown and told,
        # exactly as the direct path does.
        async with _fenced(context, job) as session:
            current = await VideoRepository.from_session(session).lock(job.video_id)
            if current is not None and current.upstream_id is None and not current.status.is_terminal:
                await archive_service.settle_unknown_submission(
                    session, video=current, settings=context.settings, message=exc.message
                )
                await ArchiveRepository.from_session(session).drop_video_input(job.video_id)
            await queue.finish(session, job, state=JobState.FAILED, error=f"submission outcome unknown: {exc.message}")
        return
    if isinstance(exc, RateLimited | UpstreamError):
        # Refused before anything started (a 429 despite our limits, e.g. an account shared with others; the
        # circuit open; upstream unreachable): the video waits again, first in line, and is tried again later.
        await _submission_refused(context, job, exc)
        return
    # A definitive answer (4xx): upstream will not render this request, as the direct path would have said.
    await _fail_unsent(context, job, code=exc.code or "upstream_rejected", message=exc.message)


async def _submission_refused(context: JobContext, job: ClaimedJob, exc: GatewayError) -> None:
    settings = context.settings.worker
    if job.last_attempt:
        await _fail_unsent(
            context,
            job,
            code=exc.code or "upstream_unavailable",
            message=f"Upstream refused this video {job.attempts} times without starting it: {exc.message}",
        )
        return
    base = settings.retry_base_seconds
    if exc.code == "upstream_auth_failed":
        # Our upstream key was refused: as for any job, the longest backoff, and loudly.
        logger.critical("upstream rejected the gateway's credentials; submit job %s waits", job.id)
        base = settings.retry_max_seconds
    delay = retry.equal_jitter(job.attempts - 1, base=base, cap=settings.retry_max_seconds)
    if (asked := exc.headers.get("retry-after")) is not None and asked.isdigit():
        delay = max(delay, float(asked))  # the provider's own word on when to come back
    logger.warning("job %s: upstream refused the create of %s, retry in %.1fs: %s", job.id, job.video_id, delay, exc)
    async with _fenced(context, job) as session:
        await VideoRepository.from_session(session).mark_submitted(job.video_id, submitted=False)
        await queue.retry(session, job, delay_seconds=delay, error=f"upstream refused the create: {exc.message}")


async def _fail_unsent(context: JobContext, job: ClaimedJob, *, code: str, message: str) -> None:
    """The video will not render: failed, its caller told; the next in line may go."""
    async with _fenced(context, job) as session:
        current = await VideoRepository.from_session(session).lock(job.video_id)
        if current is not None and current.upstream_id is None and not current.status.is_terminal:
            await admission.fail_unsent(session, video=current, code=code, message=message, settings=context.settings)
        await queue.finish(session, job, state=JobState.FAILED, error=f"{code}: {message}")
        if current is not None:
            await _wake_next(session, current.upstream_profile)


# ----- download -----------------------------------------------------------------------------------


async def run_download(context: JobContext, job: ClaimedJob) -> None:
    assert job.variant is not None
    variant = Variant(job.variant)
    video = await _load_video(context, job.video_id)
    if video is None or video.deleted_at is not None or video.upstream_id is None:
        await _finish(context, job, JobState.SUCCEEDED, "nothing to download: no such live video")
        return
    if _past_deadline(job):
        await _expire(context, job, variant, "the download window closed before the download started")
        return
    # One statement: the lease proved and extended, the asset marked downloading. An archived asset being
    # downloaded again stays archived: its copy is served until the new one lands.
    if not await queue.start_download(context.database, job, lease_seconds=context.settings.worker.lease_seconds):
        raise LeaseLost(job.id)

    key = context.storage.key_for(video.id, variant)
    if variant.value in archive_service.derived_variants(video, context.settings):
        stored = await _derive(context, job, variant, key)
    else:
        stored = await _fetch_upstream(context, job, variant, video, key)
    if stored is None:
        return  # the failure is recorded (a retry, or the asset given up)

    async with _fenced(context, job) as session:
        repository = ArchiveRepository.from_session(session)
        await repository.set_asset(
            job.video_id,
            variant.value,
            state=AssetState.ARCHIVED.value,
            s3_key=stored.key,
            bytes=stored.bytes,
            sha256=stored.sha256,
            content_type=stored.content_type,
            error=None,
        )
        await queue.finish(session, job, state=JobState.SUCCEEDED)
        # Sibling variants finishing together take turns under the video's outcome lock, which
        # `after_asset_outcome` takes after the write above and holds until commit: the last one sees every other
        # variant archived, so it alone sends the callback and records the completion-to-archive time.
        states = await archive_service.after_asset_outcome(session, video_id=job.video_id, settings=context.settings)
        video_archived = states == {AssetState.ARCHIVED}
    logger.info("archived %s %s: %d bytes, sha256 %s", job.video_id, variant.value, stored.bytes, stored.sha256)
    if variant is Variant.VIDEO and archive_service.derived_variants(video, context.settings):
        # The MP4 is in: queue the variants made from it. In a transaction of its own, after the one above
        # has released the outcome lock (queueing takes the queue's unique index, which a sibling job's
        # transaction may hold while it waits for that lock). Lost in a crash here, the reconciler queues them.
        async with context.database.transaction() as session:
            if current := await VideoRepository.from_session(session).get(video.id):
                await archive_service.schedule_downloads(session, video=current, settings=context.settings)
    landed = datetime.now(UTC)
    slack = None if job.deadline is None else (job.deadline - landed).total_seconds()
    metrics.archived(variant=variant.value, bytes_written=stored.bytes, deadline_slack_seconds=slack)
    if video_archived and video.completed_at is not None:
        metrics.video_archived(seconds_since_completion=(landed - video.completed_at).total_seconds())


async def _fetch_upstream(
    context: JobContext, job: ClaimedJob, variant: Variant, video: Video, key: str
) -> StoredObject | None:
    """Stream the provider's copy of `variant` to S3; None when it failed (and that is recorded)."""
    assert video.upstream_id is not None
    try:
        adapter = context.upstreams.adapter(video.upstream_profile)
        async with adapter.stream_content(video.upstream_id, variant=variant.value) as response:
            length = response.headers.get("content-length")
            return await context.storage.upload_stream(
                key=key,
                variant=variant,
                chunks=response.aiter_raw(STREAM_CHUNK),
                expected_bytes=int(length) if length and length.isdigit() else None,
            )
    except (ResourceNotFound, UpstreamRejected) as exc:
        if isinstance(exc, UpstreamRejected) and exc.status_code not in GONE_STATUSES:
            await _retry(context, job, error=f"upstream refused the content: {exc.message}", variant=variant)
        else:
            await _content_gone(context, job, variant, video, reason=exc.message, file_gone=exc.code == CONTENT_EXPIRED)
    except AssetRejected as exc:
        await _retry(context, job, error=f"not a valid {variant.value}: {exc}", variant=variant)
    except IncompleteAsset as exc:
        await _retry(context, job, error=f"incomplete download: {exc}", variant=variant)
    except (GatewayError, StorageError) as exc:
        await _retry(context, job, error=f"transfer failed: {exc}", variant=variant, exc=exc)
    return None


async def _derive(context: JobContext, job: ClaimedJob, variant: Variant, key: str) -> StoredObject | None:
    """Make `variant` from the archived MP4 (streamed from S3) and store it; None when it failed."""
    async with context.database.sessionmaker() as session:
        mp4 = await ArchiveRepository.from_session(session).archived_asset(job.video_id, Variant.VIDEO)
    if mp4 is None or mp4.s3_key is None:
        # Queued only after the MP4 landed; an audit repair may have taken it out of service since. Wait for it.
        await _retry(context, job, error="the MP4 it is made from is not archived (yet)", variant=variant)
        return None
    try:
        image = await derive_image(context.storage, video_key=mp4.s3_key, variant=variant)
    except DerivationFailed as exc:
        # The archived MP4 does not decode: retrying cannot help.
        await _give_up(context, job, variant, JobState.FAILED, f"could not derive the {variant.value}: {exc}")
        return None
    except StorageError as exc:
        await _retry(context, job, error=f"reading the archived MP4 failed: {exc}", variant=variant, exc=exc)
        return None

    async def chunks() -> AsyncIterator[bytes]:
        yield image

    try:
        return await context.storage.upload_stream(key=key, variant=variant, chunks=chunks(), expected_bytes=len(image))
    except (AssetRejected, IncompleteAsset, StorageError) as exc:
        await _retry(context, job, error=f"storing the derived {variant.value} failed: {exc}", variant=variant)
        return None


async def _content_gone(
    context: JobContext, job: ClaimedJob, variant: Variant, video: Video, *, reason: str, file_gone: bool = False
) -> None:
    """Upstream says the content is gone: expired if the window closed, else confirm with a GET first.

    `file_gone`: the provider's file host itself says the file is gone (an expired signed link, a CDN 404) while
    its API cannot tell (Seedance's task and fal's result still name the file). Seen on a second attempt too, it
    is taken as the word: expired now, instead of retrying until the job's attempts run out.
    """
    if _past_deadline(job, margin_seconds=60) or (file_gone and job.attempts >= 2):
        await _expire(context, job, variant, f"upstream no longer serves the asset ({reason})")
        return
    try:
        assert video.upstream_id is not None
        upstream = await context.upstreams.adapter(video.upstream_profile).retrieve_video(video.upstream_id)
    except ResourceNotFound:
        await _give_up(context, job, variant, JobState.FAILED, f"upstream forgot the video ({reason})")
        return
    except GatewayError as exc:
        await _retry(context, job, error=f"content gone, confirmation failed: {exc.message}", variant=variant)
        return
    expires_at = upstream.expires_at
    if upstream.status == VideoStatus.COMPLETED.value and (
        expires_at is None or expires_at > datetime.now(UTC).timestamp()
    ):
        await _retry(context, job, error=f"content answered gone but the video is live ({reason})", variant=variant)
    else:
        await _expire(context, job, variant, f"upstream no longer serves the asset ({reason})")


# An adapter's word that the provider's file host no longer has the file (see `_content_gone`).
CONTENT_EXPIRED = "upstream_content_expired"


# ----- helpers ------------------------------------------------------------------------------------


@asynccontextmanager
async def _fenced(context: JobContext, job: ClaimedJob) -> AsyncIterator[AsyncSession]:
    """A transaction that first proves we still hold the job's lease (and locks its row), else LeaseLost."""
    async with context.database.transaction() as session:
        if not await queue.heartbeat(session, job, lease_seconds=context.settings.worker.lease_seconds):
            raise LeaseLost(job.id)
        yield session


async def _load_video(context: JobContext, video_id: str) -> Video | None:
    async with context.database.sessionmaker() as session:
        await run_without_transaction(session)  # one read: no BEGIN, no ROLLBACK
        return await VideoRepository.from_session(session).get(video_id)


def _past_deadline(job: ClaimedJob, *, margin_seconds: float = 0.0) -> bool:
    return job.deadline is not None and (job.deadline - datetime.now(UTC)).total_seconds() <= margin_seconds


async def _finish(context: JobContext, job: ClaimedJob, state: JobState, note: str | None) -> None:
    async with _fenced(context, job) as session:
        await queue.finish(session, job, state=state, error=note)


async def _expire(context: JobContext, job: ClaimedJob, variant: Variant, reason: str) -> None:
    if await _give_up(context, job, variant, JobState.EXPIRED, reason):
        logger.warning("re-download of %s %s gave up; the archived copy stays: %s", job.video_id, variant.value, reason)
        return
    # An asset lost for good: this is what the whole service exists to prevent, so say it loudly.
    logger.error("asset expired before it was archived: %s %s: %s", job.video_id, variant.value, reason)


async def _give_up(context: JobContext, job: ClaimedJob, variant: Variant | None, state: JobState, reason: str) -> bool:
    """End the job and settle its asset; True when the asset was archived and keeps its copy (a re-download)."""
    asset_state = AssetState.EXPIRED if state is JobState.EXPIRED else AssetState.FAILED
    kept = False
    async with _fenced(context, job) as session:
        if variant is not None:
            repository = ArchiveRepository.from_session(session)
            kept = not await repository.set_unless_archived(
                job.video_id, variant.value, state=asset_state.value, error=reason
            )
            if kept:
                await repository.note_on_archived(job.video_id, variant.value, f"{REDOWNLOAD_FAILED}: {reason}")
        await queue.finish(session, job, state=state, error=reason)
        if variant is None:
            return kept
        await archive_service.settle_download_outcome(session, video_id=job.video_id, settings=context.settings)
    return kept


async def _retry(
    context: JobContext,
    job: ClaimedJob,
    *,
    error: str,
    variant: Variant | None = None,
    exc: BaseException | None = None,
) -> None:
    settings = context.settings.worker
    if isinstance(exc, UpstreamError) and exc.code == "upstream_auth_failed":
        # Our upstream key was refused: retrying fast helps nobody. Wait the longest backoff; say so loudly.
        logger.critical(
            "upstream rejected the gateway's credentials; job %s waits %ss", job.id, settings.retry_max_seconds
        )
    if job.last_attempt:
        await _give_up(context, job, variant, JobState.DEAD if variant is None else JobState.FAILED, error)
        return
    base = (
        settings.retry_max_seconds
        if isinstance(exc, UpstreamError) and exc.code == "upstream_auth_failed"
        else settings.retry_base_seconds
    )
    delay = job_retry_delay(job, base=base, cap=settings.retry_max_seconds, now=datetime.now(UTC))
    if delay is None:
        if variant is not None:
            await _expire(context, job, variant, f"the download window closed while retrying: {error}")
        else:
            await _give_up(context, job, None, JobState.EXPIRED, f"gave up at the deadline: {error}")
        return
    logger.warning(
        "job %s (%s %s) attempt %d failed, retry in %.1fs: %s",
        job.id,
        job.kind.value,
        job.video_id,
        job.attempts,
        delay,
        error,
    )
    async with _fenced(context, job) as session:
        if variant is not None:
            await ArchiveRepository.from_session(session).set_unless_archived(
                job.video_id, variant.value, state=AssetState.PENDING.value, error=error
            )
        await queue.retry(session, job, delay_seconds=delay, error=error)
