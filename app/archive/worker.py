"""The archive worker process: claim, run with a heartbeat, reconcile, and stop gracefully.

Any number of workers on any number of hosts share the queue. A claim is a short transaction (committed
before any network I/O). While a job runs, a heartbeat renews its lease every `heartbeat_seconds`; if a
renewal finds the lease gone, the job is cancelled (someone else owns it now). Maintenance on every
worker puts lapsed leases back in the queue (or to `dead` at the last attempt) and expires queued jobs
whose window closed; the reconciler finds what lost webhooks missed; the integrity audit (app/archive/audit.py)
checks a bounded batch of archived objects every `audit_interval_seconds`, in the background; the pruner
(app/archive/pruner.py) deletes what retention no longer keeps every `VG_RETENTION__INTERVAL_SECONDS`, in the
background too, on one worker at a time.

Shutdown: the first stop request stops claiming and lets running jobs finish for `shutdown_grace_seconds`;
what is still running then is cancelled and its lease released, so another worker takes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog

from app.archive import audit, pruner, queue, reconciler
from app.archive import service as archive_service
from app.archive.jobs import REDOWNLOAD_FAILED, JobContext, run_job
from app.archive.queue import ClaimedJob, JobRef
from app.archive.repository import ArchiveRepository
from app.archive.wakeup import WakeUpListener
from app.callbacks import delivery as callbacks_delivery
from app.core import metrics
from app.models import AssetState, JobKind, JobState

logger = logging.getLogger(__name__)

T = TypeVar("T")


# An idle worker claims on the API's wake-ups at most this often (`Worker._pace_wake_ups`).
WAKE_UP_SPACING_SECONDS = 0.1


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, context: JobContext, *, worker_id: str | None = None) -> None:
        self._context = context
        self._settings = context.settings.worker
        self.worker_id = worker_id or default_worker_id()
        self._stopping = asyncio.Event()
        self._running: dict[asyncio.Task[None], ClaimedJob] = {}
        self._next_maintenance = 0.0
        self._next_reconcile = 0.0
        self._next_janitor = 0.0
        self._next_audit = 0.0
        self._next_prune = 0.0
        self._next_callbacks = 0.0
        self._callbacks: asyncio.Task[object] | None = None
        self._audit: asyncio.Task[object] | None = None
        self._prune: asyncio.Task[object] | None = None
        self._deliver_callbacks = True
        # Woken by the API's NOTIFY when work is queued (decision 014; made by `run`); the poll is the fallback.
        self._wakeups: WakeUpListener | None = None
        self._woken_at = 0.0

    def request_stop(self) -> None:
        """Stop claiming; running jobs get the grace period."""
        if not self._stopping.is_set():
            logger.info("worker %s: stopping; %d job(s) in flight", self.worker_id, len(self._running))
        self._stopping.set()

    @property
    def listening(self) -> bool:
        """Whether the worker is LISTENing for the API's wake-ups now (it polls either way)."""
        return self._wakeups is not None and self._wakeups.connection is not None

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        logger.info("worker %s: started (concurrency %d)", self.worker_id, self._settings.concurrency)
        listening = None
        if self._settings.wake_on_notify:
            self._wakeups = WakeUpListener(self._context.database)
            listening = asyncio.create_task(self._wakeups.run(), name="wake-ups")
        try:
            while not self._stopping.is_set():
                await self._tick()
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
            await self._drain()
        logger.info("worker %s: stopped", self.worker_id)

    async def run_until_idle(self, *, within_seconds: float = 60.0, settle_seconds: float = 1.0) -> None:
        """Run jobs (no reconciler, no pruner, no callback sending) until none is in flight and none is due within
        `settle_seconds` (tests drive those themselves)."""
        self._next_reconcile = self._next_janitor = self._next_audit = self._next_prune = float("inf")
        self._deliver_callbacks = False
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline:
            claimed = await self._tick(wait=False)
            if self._running:
                await asyncio.wait(set(self._running), timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                continue
            if claimed:
                continue
            async with self._context.database.sessionmaker() as session:
                due = await queue.next_due(session)
            if due is None or due > settle_seconds:
                return
            await asyncio.sleep(min(max(due, 0.01), 0.2))
        raise TimeoutError("the queue did not drain")

    # ----- the loop ------------------------------------------------------------------------------

    async def _tick(self, *, wait: bool = True) -> int:
        now = time.monotonic()
        if now >= self._next_maintenance:
            self._next_maintenance = now + max(1.0, self._settings.lease_seconds / 3)
            await self._guarded(self.maintain(), "maintenance")
            await self._guarded(self._refresh_queue_depth(), "queue depth")
        if now >= self._next_reconcile:
            self._next_reconcile = now + self._settings.reconcile_interval_seconds
            await self._guarded(reconciler.reconcile_once(self._context), "reconcile")
        if now >= self._next_janitor:
            self._next_janitor = now + self._settings.janitor_interval_seconds
            await self._guarded(reconciler.run_janitor(self._context), "janitor")
        if self._settings.audit_batch_size and now >= self._next_audit and (self._audit is None or self._audit.done()):
            self._next_audit = now + self._settings.audit_interval_seconds
            # In the background too: a batch waits on S3 and upstream, and must not hold up claiming.
            self._audit = asyncio.create_task(self._guarded(audit.run_batch(self._context), "audit"))
        retention = self._context.settings.retention
        if retention.enabled and now >= self._next_prune and (self._prune is None or self._prune.done()):
            self._next_prune = now + retention.interval_seconds
            # In the background: a pass of many batches must not hold up claiming either.
            self._prune = asyncio.create_task(
                self._guarded(pruner.prune_once(self._context.database, retention), "pruner")
            )
        idle_sender = self._callbacks is None or self._callbacks.done()
        if self._deliver_callbacks and now >= self._next_callbacks and idle_sender:
            # In the background: a slow receiver must not hold up claiming archive work.
            self._callbacks = asyncio.create_task(self._callback_pass())
        claimed = 0
        free = self._settings.concurrency - len(self._running)
        if self._wakeups is not None:
            # Cleared before the claim: a job queued from now on sets it again, and the wait below returns at once.
            self._wakeups.event.clear()
        if free > 0:
            jobs = await self._guarded(self._claim(free), "claim") or []
            for job in jobs:
                task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
                self._running[task] = job
                task.add_done_callback(self._running.pop)
            claimed = len(jobs)
        if wait and not claimed:
            waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(self._stopping.wait())}
            woken: asyncio.Future[Any] | None = None
            if self._wakeups is not None:
                woken = asyncio.ensure_future(self._wakeups.event.wait())
                waiters.add(woken)
            waiters.update(self._running)  # type: ignore[arg-type]
            done, pending = await asyncio.wait(
                waiters, timeout=self._settings.poll_interval_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for future in pending:
                if future not in self._running:
                    future.cancel()
            if woken is not None and woken in done:
                await self._pace_wake_ups()
        return claimed

    async def _pace_wake_ups(self) -> None:
        """At most one claim per `WAKE_UP_SPACING_SECONDS` on wake-ups: every idle worker wakes on every NOTIFY of
        every API process, and all but one find nothing, so without this a fleet's empty claims would grow with
        its API pods; a wake-up in a quiet spell is claimed for at its end, not lost (the event stays set)."""
        since = time.monotonic() - self._woken_at
        if since < WAKE_UP_SPACING_SECONDS:
            await asyncio.sleep(WAKE_UP_SPACING_SECONDS - since)
        self._woken_at = time.monotonic()

    async def _callback_pass(self) -> None:
        """One batch of due callbacks. Another follows on the next tick while there were some; an empty outbox is
        looked at again only after the poll interval (a callback waits no longer than a job does), not on every
        tick: in a burst a tick comes with every finished job, and each look is a transaction."""
        sent = await self._guarded(callbacks_delivery.deliver_due(self._context), "callbacks")
        if not sent:
            self._next_callbacks = time.monotonic() + self._settings.poll_interval_seconds

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        async with self._context.database.transaction() as session:
            return await queue.claim(
                session, worker_id=self.worker_id, limit=limit, lease_seconds=self._settings.lease_seconds
            )

    async def _execute(self, job: ClaimedJob) -> None:
        # This task's own context (a copy made at create_task): what is bound here stays on this job's lines,
        # the heartbeat's included; the request id is the one of the request that queued the work, if any.
        fields: dict[str, object] = {"job_id": job.id, "job_kind": job.kind.value, "video_id": job.video_id}
        # Taken from the claim: a lookup of its own cost every job a session and two round trips (bench/).
        if job.request_id is not None:
            fields["request_id"] = job.request_id
        structlog.contextvars.bind_contextvars(**fields)
        job_task = asyncio.current_task()
        assert job_task is not None
        heartbeat = asyncio.create_task(self._heartbeat(job, job_task))
        started = time.monotonic()
        try:
            await run_job(self._context, job)
            # One line per job run, so a request's trail through the worker is complete even when the job
            # itself had nothing to say.
            logger.info(
                "job %s (%s %s%s) attempt %d ran in %.2fs",
                job.id,
                job.kind.value,
                job.video_id,
                f" {job.variant}" if job.variant else "",
                job.attempts,
                time.monotonic() - started,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug in a handler must not kill the worker; the lease lapses and the job is retried.
            logger.exception("job %s crashed; its lease will lapse and it will be retried", job.id)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _refresh_queue_depth(self) -> None:
        async with self._context.database.sessionmaker() as session:
            states = await queue.job_states(session)
        metrics.queue_depth(states, known=tuple(state.value for state in JobState))

    async def _heartbeat(self, job: ClaimedJob, job_task: asyncio.Task[object]) -> None:
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                async with self._context.database.transaction() as session:
                    held = await queue.heartbeat(session, job, lease_seconds=self._settings.lease_seconds)
            except Exception as exc:  # the database is unreachable: keep trying while the lease may still hold
                logger.warning("job %s: heartbeat failed: %s", job.id, type(exc).__name__)
                if time.monotonic() - last_renewal > self._settings.lease_seconds:
                    logger.error("job %s: lease may have lapsed without a renewal; abandoning", job.id)
                    job_task.cancel()
                    return
                continue
            if not held:
                logger.warning("job %s: lease lost; cancelling the work", job.id)
                job_task.cancel()
                return
            last_renewal = time.monotonic()

    async def maintain(self) -> None:
        """Rescue lapsed leases and expire overdue jobs, and record it on their assets."""
        async with self._context.database.transaction() as session:
            rescued = await queue.rescue_stalled(session)
            expired = await queue.expire_overdue(session)
            repository = ArchiveRepository.from_session(session)
            # Rows and outcome locks of several videos in one transaction: always taken in the same order (by
            # video, then variant), so two workers' passes may wait on each other but never deadlock.
            for ref in sorted([*rescued, *expired], key=lambda ref: (ref.video_id, ref.variant or "", ref.id)):
                await self._record_on_asset(repository, ref)
            for video_id in sorted({ref.video_id for ref in [*rescued, *expired] if ref.kind is JobKind.DOWNLOAD}):
                await archive_service.settle_download_outcome(
                    session, video_id=video_id, settings=self._context.settings
                )
        for ref in rescued:
            logger.warning(
                "job %s (%s %s): lease lapsed, now %s", ref.id, ref.kind.value, ref.video_id, ref.state.value
            )
        for ref in expired:
            logger.error(
                "job %s (%s %s %s): expired before it could run", ref.id, ref.kind.value, ref.video_id, ref.variant
            )

    @staticmethod
    async def _record_on_asset(repository: ArchiveRepository, ref: JobRef) -> None:
        # An archived asset whose re-download this was keeps its state and its copy (app/archive/jobs.py).
        if ref.kind is not JobKind.DOWNLOAD or ref.variant is None:
            return
        reason = None
        if ref.state is JobState.EXPIRED:
            reason = "the download window closed before the job could run"
            changed = await repository.set_unless_archived(
                ref.video_id, ref.variant, state=AssetState.EXPIRED.value, error=reason
            )
        elif ref.state is JobState.QUEUED:
            # Back in the queue: nobody is downloading it until the next claim.
            changed = await repository.set_unless_archived(ref.video_id, ref.variant, state=AssetState.PENDING.value)
        elif ref.state is JobState.DEAD:
            reason = "attempts exhausted (worker lost)"
            changed = await repository.set_unless_archived(
                ref.video_id, ref.variant, state=AssetState.FAILED.value, error=reason
            )
        else:
            return
        if not changed and reason is not None:
            await repository.note_on_archived(ref.video_id, ref.variant, f"{REDOWNLOAD_FAILED}: {reason}")

    async def _drain(self) -> None:
        if self._callbacks is not None:
            # A delivery cut short is retried by the next worker: its row is only marked once answered.
            self._callbacks.cancel()
            await asyncio.gather(self._callbacks, return_exceptions=True)
        if self._audit is not None:
            # A batch cut short changes nothing it had not committed; its objects are checked again in turn.
            self._audit.cancel()
            await asyncio.gather(self._audit, return_exceptions=True)
        if self._prune is not None:
            # A batch cut short rolls back; the pass releases its lock (or closes its connection) on the way out.
            self._prune.cancel()
            await asyncio.gather(self._prune, return_exceptions=True)
        if not self._running:
            return
        grace = self._settings.shutdown_grace_seconds
        _, pending = await asyncio.wait(set(self._running), timeout=grace)
        interrupted = [self._running[task] for task in pending if task in self._running]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for job in interrupted:
            try:
                async with self._context.database.transaction() as session:
                    released = await queue.release(session, job)
                    if released and job.variant is not None:
                        await ArchiveRepository.from_session(session).set_unless_archived(
                            job.video_id, job.variant, state=AssetState.PENDING.value
                        )
                logger.info("job %s: released at shutdown (%s)", job.id, "ok" if released else "lease already gone")
            except Exception as exc:  # the lease lapses on its own if we cannot release it
                logger.warning("job %s: release failed: %s", job.id, type(exc).__name__)

    @staticmethod
    async def _guarded(work: Awaitable[T], what: str) -> T | None:
        try:
            return await work
        except Exception as exc:
            logger.warning("worker %s failed: %s: %s", what, type(exc).__name__, exc)
            return None
