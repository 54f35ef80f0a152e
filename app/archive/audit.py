"""The integrity audit: every archived object is still in S3, with the size (and, on demand, the SHA-256) recorded.

What S3 loses behind the gateway's back (an operator's delete, a lifecycle rule, a bucket restored from an old
backup, a corrupted disk) would otherwise stay `archived` in our rows while its content answers an error and
nothing repairs it. The audit checks objects in bounded batches, least recently checked first: each worker runs
one batch of `audit_batch_size` every `audit_interval_seconds` (HEAD only: present, with the recorded size, and
the SHA-256 the object carries in its metadata or tag, when it has one); an operator runs `video-gateway audit`
(`--sha256` reads and hashes every byte: the only check of an object rewritten with the right size).

A finding is acted on only after its row is re-read under a lock and still says what was checked (a new copy
that landed meanwhile is not a finding):

- repair: upstream still serves the video inside its window (asked now), or, for a variant made from the MP4
  (app/archive/derive.py), the MP4 is archived or on its way: the asset goes back to `pending` (no longer served
  from S3; the content path then streams from upstream) and a download is queued, which lands a new copy.
- lost: upstream no longer has it (404, or its window closed): the asset is `lost` with the reason, an ERROR
  line is logged, `vg_assets_lost_total` counts it, the console badges it and the caller gets
  `video.archive_failed`. Nothing retries a lost asset (the reconciler only looks at pending ones); a
  `video-gateway replay`, should upstream serve the video again, downloads it again.
- deferred: upstream could not be asked (unreachable, or its profile is no longer configured): nothing changes,
  and the object is checked again at the next batch.

An object S3 could not answer for (S3 down) is `unreadable`: nothing changes, and it is checked again first at
the next batch. No transaction is open during S3 or upstream calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from app.archive import queue
from app.archive import service as archive_service
from app.archive.repository import ArchiveRepository, AuditTarget
from app.archive.storage import ObjectNotFound, StorageError
from app.core import metrics
from app.core.config import Settings
from app.models import AssetState, JobKind, Variant, Video
from app.videos.repository import VideoRepository

if TYPE_CHECKING:
    from app.archive.jobs import JobContext

logger = logging.getLogger(__name__)

# A repair needs time to download: a window closing sooner than this counts as closed (the asset is lost now
# rather than pending and then expired).
REPAIR_MARGIN_SECONDS = 60.0


class Problem(StrEnum):
    MISSING = "missing"
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"


class Action(StrEnum):
    REPAIR = "repair"  # back to pending, a new download queued (or on its way)
    LOST = "lost"
    DEFERRED = "deferred"  # upstream could not be asked: checked again next time
    CHANGED = "changed"  # the row changed since it was checked (a new copy landed): nothing to do
    WOULD_REPAIR = "would_repair"  # --dry-run
    WOULD_LOSE = "would_lose"  # --dry-run


@dataclass(frozen=True)
class Finding:
    video_id: str
    variant: str
    problem: Problem
    detail: str  # what the check saw
    action: Action
    reason: str  # why that action


@dataclass
class AuditReport:
    full_hash: bool
    checked: int = 0
    intact: int = 0
    findings: list[Finding] = field(default_factory=list)
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)  # video, variant, S3's error

    def count(self, *actions: Action) -> int:
        return sum(finding.action in actions for finding in self.findings)

    @property
    def clean(self) -> bool:
        return not self.findings and not self.unreadable


async def run_batch(context: JobContext) -> AuditReport:
    """The worker's share: one batch of objects not checked for `audit_recheck_seconds`, HEAD only."""
    settings = context.settings.worker
    checked_before = datetime.now(UTC) - timedelta(seconds=settings.audit_recheck_seconds)
    return await audit_once(context, limit=settings.audit_batch_size, checked_before=checked_before)


async def audit_once(
    context: JobContext,
    *,
    limit: int,
    checked_before: datetime | None = None,
    video_id: str | None = None,
    full_hash: bool = False,
    dry_run: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> AuditReport:
    """Check up to `limit` archived objects (one video's with `video_id`) and act on what is wrong.

    `checked_before`: only objects not checked since (the worker's pace); None, any, least recently checked
    first. `full_hash` reads every byte and compares the SHA-256. `dry_run` asks upstream and reports what would
    be done, changing nothing (not even when objects were last checked). `on_progress(done, total)` hears how
    many of the objects picked are done, before each and after the last (the CLI's progress display).
    """
    report = AuditReport(full_hash=full_hash)
    if limit <= 0:
        return report
    async with context.database.transaction() as session:
        repository = ArchiveRepository.from_session(session)
        if video_id is not None:
            targets = await repository.archived_of_video(video_id, limit=limit)
        else:
            targets = await repository.claim_audit_batch(checked_before=checked_before, limit=limit, claim=not dry_run)
    # The MP4 first: what is made from it is judged by the MP4's state.
    order = [variant.value for variant in Variant]
    targets.sort(key=lambda target: (target.video_id, order.index(target.variant)))
    for index, target in enumerate(targets):
        if on_progress is not None:
            on_progress(index, len(targets))
        report.checked += 1
        try:
            problem = await _check(context, target, full_hash=full_hash)
        except StorageError as exc:
            logger.warning("audit: could not check %s (%s %s): %s", target.s3_key, target.video_id, target.variant, exc)
            metrics.audit_check(result="unreadable")
            report.unreadable.append((target.video_id, target.variant, str(exc)))
            if not dry_run:
                await _stamp(context, target, checked=False)
            continue
        metrics.audit_check(result="ok" if problem is None else problem[0].value)
        if problem is None:
            report.intact += 1
            if video_id is not None and not dry_run:
                await _stamp(context, target, checked=True)  # a batch was stamped when claimed
            continue
        finding = await _settle(context, target, problem[0], problem[1], dry_run=dry_run)
        report.findings.append(finding)
    if on_progress is not None:
        on_progress(len(targets), len(targets))
    if report.findings or report.unreadable:
        logger.info(
            "audit: %d object(s) checked, %d intact, %d finding(s), %d unreadable",
            report.checked,
            report.intact,
            len(report.findings),
            len(report.unreadable),
        )
    return report


async def _check(context: JobContext, target: AuditTarget, *, full_hash: bool) -> tuple[Problem, str] | None:
    """What is wrong with the target's object, or None; raises StorageError when S3 cannot say."""
    stored = await context.storage.head(target.s3_key)
    if stored is None:
        return Problem.MISSING, f"no object at {target.s3_key}"
    if target.bytes is not None and stored.bytes != target.bytes:
        return Problem.SIZE_MISMATCH, f"{stored.bytes} bytes in S3, {target.bytes} recorded"
    # Our uploads tag the object with its SHA-256 (metadata or tag); an object rewritten by us with other bytes
    # says so without a read. One without a tag (written by someone else) needs the full read to tell.
    if stored.sha256 and target.sha256 and stored.sha256 != target.sha256:
        return (
            Problem.CHECKSUM_MISMATCH,
            f"the object says sha256 {stored.sha256[:16]}…, {target.sha256[:16]}… recorded",
        )
    if full_hash:
        try:
            size, sha256 = await context.storage.read_digest(target.s3_key)
        except ObjectNotFound:
            return Problem.MISSING, f"no object at {target.s3_key}"
        if target.bytes is not None and size != target.bytes:
            return Problem.SIZE_MISMATCH, f"{size} bytes read, {target.bytes} recorded"
        if target.sha256 and sha256 != target.sha256:
            return Problem.CHECKSUM_MISMATCH, f"sha256 {sha256[:16]}… read, {target.sha256[:16]}… recorded"
    return None


async def _settle(context: JobContext, target: AuditTarget, problem: Problem, detail: str, *, dry_run: bool) -> Finding:
    """Decide (asking upstream outside any transaction) and act, on the row as it is now."""

    def finding(action: Action, reason: str) -> Finding:
        return Finding(target.video_id, target.variant, problem, detail, action, reason)

    async with context.database.sessionmaker() as session:
        video = await VideoRepository.from_session(session).get(target.video_id)
    if video is None or video.deleted_at is not None:
        return finding(Action.CHANGED, "the video was deleted meanwhile")
    derived = target.variant in archive_service.derived_variants(video, context.settings)
    verdict = None
    if not derived:
        verdict = await archive_service.ask_upstream(
            context.upstreams, video=video, settings=context.settings.worker, margin_seconds=REPAIR_MARGIN_SECONDS
        )
        if verdict.serves is None:
            logger.warning(
                "audit: %s %s is %s; %s, so it stays as is", target.video_id, target.variant, problem, verdict.reason
            )
            if not dry_run:
                await _stamp(context, target, checked=False)
            return finding(Action.DEFERRED, verdict.reason)

    async with context.database.transaction() as session:
        repository = ArchiveRepository.from_session(session)
        row = await repository.lock_asset(target.video_id, target.variant)
        if (
            row is None
            or row.state != AssetState.ARCHIVED.value
            or (row.s3_key, row.bytes, row.sha256) != (target.s3_key, target.bytes, target.sha256)
        ):
            return finding(Action.CHANGED, "the asset changed since it was checked")
        deadline: datetime | None = None
        if verdict is not None:
            repairable, reason, deadline = bool(verdict.serves), verdict.reason, verdict.deadline
        else:
            repairable, reason = await _mp4_verdict(repository, video)
        if dry_run:
            return finding(Action.WOULD_REPAIR if repairable else Action.WOULD_LOSE, reason)
        if repairable:
            await _queue_repair(
                repository,
                video,
                target,
                settings=context.settings,
                found=_found(problem, detail),
                deadline=deadline,
                derived=derived,
            )
        else:
            await repository.set_asset(
                target.video_id,
                target.variant,
                state=AssetState.LOST.value,
                error=f"{_found(problem, detail)}; {reason}",
            )
            # The caller hears of it (`video.archive_failed`, once per video), as of any archive that failed.
            await archive_service.after_asset_outcome(session, video_id=target.video_id, settings=context.settings)
    if repairable:
        logger.warning(
            "audit: %s %s is %s (%s); %s: downloading it again",
            target.video_id,
            target.variant,
            problem,
            detail,
            reason,
        )
        metrics.audit_repair(variant=target.variant)
        return finding(Action.REPAIR, reason)
    # An archived asset gone for good: what the whole service exists to prevent, so say it loudly.
    logger.error(
        "archived asset lost: %s %s is %s (%s) and %s", target.video_id, target.variant, problem, detail, reason
    )
    metrics.asset_lost(variant=target.variant)
    return finding(Action.LOST, reason)


async def _mp4_verdict(repository: ArchiveRepository, video: Video) -> tuple[bool, str]:
    """Whether a variant made from the MP4 can be made again: the MP4 is archived, or being archived."""
    mp4 = next((asset for asset in await repository.assets_of(video.id) if asset.variant == Variant.VIDEO.value), None)
    state = mp4.state if mp4 is not None else None
    if state in (AssetState.ARCHIVED.value, AssetState.PENDING.value, AssetState.DOWNLOADING.value):
        return True, f"it is made from the MP4, which is {state}"
    return False, f"it is made from the MP4, which is {state or 'not recorded'}"


async def _queue_repair(
    repository: ArchiveRepository,
    video: Video,
    target: AuditTarget,
    *,
    settings: Settings,
    found: str,
    deadline: datetime | None,
    derived: bool,
) -> None:
    # Pending: no longer served from S3 (the content path streams from upstream meanwhile), and the download
    # lands a new copy at the same key. The recorded size and hash stay until then: what the copy must match.
    await repository.set_asset(
        target.video_id, target.variant, state=AssetState.PENDING.value, error=f"{found}; downloading it again"
    )
    if derived:
        # Made from our own MP4, with no deadline: queued now if the MP4 is archived, else once it lands.
        await archive_service.schedule_downloads(repository.session, video=video, settings=settings)
        return
    await queue.enqueue(
        repository.session,
        kind=JobKind.DOWNLOAD,
        video_id=target.video_id,
        variant=target.variant,
        deadline=deadline,
        max_attempts=settings.worker.max_attempts,
    )


def _found(problem: Problem, detail: str) -> str:
    """What the audit found, as the asset's `error` says it (the API's `archive` object and the console show it)."""
    return f"audit: {problem.value.replace('_', ' ')}: {detail}"


async def _stamp(context: JobContext, target: AuditTarget, *, checked: bool) -> None:
    async with context.database.transaction() as session:
        await ArchiveRepository.from_session(session).stamp_audited(target.video_id, target.variant, checked=checked)
