-- Every query of the archive job queue, and the pruner's. Loaded once, and run only, by app/archive/queue.py: the
-- queue's on the caller's session, the `prune_*` ones on the connection of app/archive/pruner.py's pass.
-- Times are always the database's now(): a worker with a skewed clock can neither steal nor stretch a lease.

-- name: enqueue
-- Add a job unless an active (queued or running) one exists for the same kind, video and variant.
INSERT INTO archive_jobs (kind, video_id, variant, state, attempts, max_attempts, run_after, deadline, updated_at)
VALUES (:kind, :video_id, :variant, 'queued', 0, :max_attempts,
        now() + make_interval(secs => :delay_seconds), :deadline, now())
ON CONFLICT (kind, video_id, (coalesce(variant, ''))) WHERE state IN ('queued', 'running') DO NOTHING
RETURNING id;

-- name: record_video_event
-- The webhook receiver's common case, an event that names one video, in ONE statement (decision 009), run by
-- app/webhooks/service.py through queue.record_video_event, on its own (autocommit) or in the caller's transaction:
-- * `video`: ours among the ids the event's object may have in the profile, the oldest, deleted or not (the
--   caller decides what a deleted one means);
-- * `event`: the delivery with its outcome (no video: orphan, keeping the video its callback URL's reference names,
--   app/upstream/reference.py; a deleted one: ignored; else enqueued), once per
--   webhook id and per event id (no conflict target, so both unique indexes count; a concurrent copy waits for the
--   first and then does nothing);
-- * `job`: only when that row is new and enqueued, the video's sync job exactly as `enqueue` inserts it (delay 0,
--   the same ON CONFLICT on active jobs), with archive_service.sync_deadline's deadline: created_at + horizon.
-- The request id is a parameter on both rows, not the transaction setting the column defaults read (decision 005):
-- there may be no transaction to stamp. No row back: the delivery is a duplicate and nothing was written.
WITH video AS (
    SELECT id, upstream_id, created_at, deleted_at
    FROM videos
    WHERE upstream_profile = :profile AND upstream_id = ANY(:upstream_ids)
    ORDER BY created_at
    LIMIT 1
), event AS (
    INSERT INTO webhook_events (id, webhook_id, event_id, event_type, upstream_profile, upstream_video_id, video_id,
                                outcome, body, request_id)
    SELECT gen_random_uuid(), :webhook_id, :event_id, :event_type, :profile, coalesce(video.upstream_id, :object_id),
           coalesce(video.id, :referenced_video_id),
           CASE WHEN video.id IS NULL THEN 'orphan' WHEN video.deleted_at IS NOT NULL THEN 'ignored' ELSE 'enqueued' END,
           :body, :request_id
    FROM (VALUES (1)) AS delivery LEFT JOIN video ON true
    ON CONFLICT DO NOTHING
    RETURNING outcome, video_id
), job AS (
    INSERT INTO archive_jobs (kind, video_id, variant, state, attempts, max_attempts, run_after, deadline, updated_at,
                              request_id)
    SELECT 'sync', video.id, NULL, 'queued', 0, :max_attempts, now(),
           video.created_at + make_interval(secs => :sync_horizon_seconds), now(), :request_id
    FROM event JOIN video ON video.id = event.video_id
    WHERE event.outcome = 'enqueued'
    ON CONFLICT (kind, video_id, (coalesce(variant, ''))) WHERE state IN ('queued', 'running') DO NOTHING
    RETURNING id
)
SELECT event.outcome, event.video_id, (SELECT id FROM job) AS job_id FROM event;

-- name: wake_workers
-- Wake the idle workers LISTENing on the queue's channel (decision 014, app/archive/wakeup.py): one coalesced
-- NOTIFY, its own transaction, whose commit does not wait for the WAL flush (a lost wake-up is found by the poll).
SELECT pg_notify(:channel, '') FROM (SELECT set_config('synchronous_commit', 'off', true)) AS this_transaction_only;

-- name: claim
-- Lease up to :limit runnable jobs in one short transaction; concurrent claimers skip rows already locked.
UPDATE archive_jobs AS job
SET state = 'running',
    attempts = job.attempts + 1,
    lease_token = gen_random_uuid(),
    lease_until = now() + make_interval(secs => :lease_seconds),
    worker_id = :worker_id,
    updated_at = now()
FROM (
    SELECT id FROM archive_jobs
    WHERE state = 'queued' AND run_after <= now() AND (deadline IS NULL OR deadline > now())
    ORDER BY run_after, id
    FOR UPDATE SKIP LOCKED
    LIMIT :limit
) AS picked
WHERE job.id = picked.id
RETURNING job.id, job.kind, job.video_id, job.variant, job.attempts, job.max_attempts, job.deadline,
          job.lease_token, job.request_id;

-- name: heartbeat
-- Extend a lease we still hold; no row back means the lease was lost (lapsed and taken over).
UPDATE archive_jobs
SET lease_until = now() + make_interval(secs => :lease_seconds), updated_at = now()
WHERE id = :id AND lease_token = :lease_token AND state = 'running'
RETURNING id;

-- name: start_download
-- A download job's start in ONE statement, run alone on the driver (decision 012): prove the lease and extend it
-- (as `heartbeat`), and mark the job's asset `downloading` unless it is archived (an archived copy stays served
-- until the new one lands: ArchiveRepository.set_unless_archived's rule). No row back: the lease was lost and
-- nothing was marked. Harmless twice: both updates set what they set the first time.
WITH lease AS (
    UPDATE archive_jobs
    SET lease_until = now() + make_interval(secs => :lease_seconds), updated_at = now()
    WHERE id = :id AND lease_token = :lease_token AND state = 'running'
    RETURNING video_id, variant
), marked AS (
    UPDATE assets
    SET state = 'downloading', updated_at = now()
    FROM lease
    WHERE assets.video_id = lease.video_id AND assets.variant = lease.variant AND assets.state <> 'archived'
    RETURNING assets.id
)
SELECT (SELECT count(*) FROM marked) AS marked FROM lease;

-- name: finish
-- End a job we hold in a terminal state (succeeded, failed, expired, dead); fenced by the lease token.
UPDATE archive_jobs
SET state = :state, last_error = :error, lease_token = NULL, lease_until = NULL, finished_at = now(),
    updated_at = now()
WHERE id = :id AND lease_token = :lease_token AND state = 'running'
RETURNING id;

-- name: retry
-- Give a job we hold back to the queue to run after :delay_seconds; fenced by the lease token.
UPDATE archive_jobs
SET state = 'queued', run_after = now() + make_interval(secs => :delay_seconds), last_error = :error,
    lease_token = NULL, lease_until = NULL, updated_at = now()
WHERE id = :id AND lease_token = :lease_token AND state = 'running'
RETURNING id;

-- name: defer
-- Hand a job we hold back to run after :delay_seconds WITHOUT spending an attempt: it found no capacity for its
-- create (admission control, app/archive/admission.py) and changed nothing. Fenced by the lease token.
UPDATE archive_jobs
SET state = 'queued', attempts = greatest(attempts - 1, 0), run_after = now() + make_interval(secs => :delay_seconds),
    last_error = :reason, lease_token = NULL, lease_until = NULL, updated_at = now()
WHERE id = :id AND lease_token = :lease_token AND state = 'running'
RETURNING id;

-- name: wake_submit
-- Run the queued `submit` job of this video now: it has just become first in its profile's line (the video
-- ahead of it was sent or left the line), so it need not sit out the wait it was deferred with.
UPDATE archive_jobs
SET run_after = now(), updated_at = now()
WHERE kind = 'submit' AND video_id = :video_id AND state = 'queued' AND run_after > now()
RETURNING id;

-- name: release
-- Graceful shutdown: hand a job back at once, not counting the interrupted attempt.
UPDATE archive_jobs
SET state = 'queued', attempts = greatest(attempts - 1, 0), run_after = now(), lease_token = NULL,
    lease_until = NULL, last_error = 'released at worker shutdown', updated_at = now()
WHERE id = :id AND lease_token = :lease_token AND state = 'running'
RETURNING id;

-- name: rescue_stalled
-- Jobs whose lease lapsed (worker killed, frozen or cut off) return to the queue, or die at their last attempt.
UPDATE archive_jobs
SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
    last_error = CASE WHEN attempts >= max_attempts
                      THEN 'lease lapsed on the last attempt (worker lost); giving up'
                      ELSE 'lease lapsed (worker lost); requeued' END,
    finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
    lease_token = NULL, lease_until = NULL, run_after = now(), updated_at = now()
WHERE state = 'running' AND lease_until < now()
RETURNING id, kind, video_id, variant, state;

-- name: expire_overdue
-- Queued jobs whose deadline passed never start: they end as expired.
UPDATE archive_jobs
SET state = 'expired', last_error = 'the download window closed before the job could run', finished_at = now(),
    updated_at = now()
WHERE state = 'queued' AND deadline IS NOT NULL AND deadline <= now()
RETURNING id, kind, video_id, variant, state;

-- name: job_states
-- Count jobs per state (metrics, tests).
SELECT state, count(*) AS jobs FROM archive_jobs GROUP BY state;

-- name: next_due
-- Seconds until the earliest queued job may run (negative: overdue; NULL: nothing queued).
SELECT extract(epoch FROM min(run_after) - now())::float AS seconds FROM archive_jobs WHERE state = 'queued';

-- name: oldest_queued
-- Age in seconds of the oldest runnable queued job (NULL when the queue is empty).
SELECT extract(epoch FROM now() - min(run_after))::float AS seconds
FROM archive_jobs WHERE state = 'queued' AND run_after <= now();

-- name: at_risk
-- Live download jobs whose window closes within :within_seconds, soonest first.
SELECT id, video_id, variant, state, attempts, max_attempts, last_error,
       extract(epoch FROM deadline - now())::float AS seconds_left
FROM archive_jobs
WHERE kind = 'download' AND state IN ('queued', 'running') AND deadline IS NOT NULL
  AND deadline <= now() + make_interval(secs => :within_seconds)
ORDER BY deadline
LIMIT :limit;

-- name: jobs_of_video
-- Every job of one video, whatever its state, oldest first (the console's timeline of a video).
SELECT id, kind, variant, state, attempts, max_attempts, last_error, created_at, updated_at, finished_at
FROM archive_jobs
WHERE video_id = :video_id
ORDER BY id;

-- name: prune_lock
-- One pruner at a time among all workers: a session-level advisory lock on the pruner's own connection, held for
-- the whole pass (its batches are separate transactions); false when another worker is pruning.
SELECT pg_try_advisory_lock(hashtextextended('vg-pruner', 0)) AS locked;

-- name: prune_unlock
SELECT pg_advisory_unlock(hashtextextended('vg-pruner', 0)) AS unlocked;

-- name: prune_timeouts
-- First statement of every pruning batch (transaction-local): never wait long for a lock (a waiting DELETE would
-- queue the queue's own lockers behind it), and never run long.
SELECT set_config('lock_timeout', :lock_timeout, true), set_config('statement_timeout', :statement_timeout, true);

-- name: prune_archive_jobs
-- Delete up to :batch_size terminal jobs that finished over :keep_seconds ago, oldest first (ix_archive_jobs_prunable).
-- Queued and running jobs are never candidates; SKIP LOCKED passes over any row another transaction holds.
WITH doomed AS (
    SELECT id FROM archive_jobs
    WHERE state IN ('succeeded', 'failed', 'expired', 'dead')
      AND finished_at < now() - make_interval(secs => :keep_seconds)
    ORDER BY finished_at
    FOR UPDATE SKIP LOCKED
    LIMIT :batch_size
), deleted AS (
    DELETE FROM archive_jobs AS job USING doomed WHERE job.id = doomed.id RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: prune_webhook_events
-- Delete up to :batch_size webhook events received over :keep_seconds ago, oldest first
-- (ix_webhook_events_prunable). Orphans stay: the reconciler may still match them to a video.
WITH doomed AS (
    SELECT id FROM webhook_events
    WHERE outcome IN ('enqueued', 'ignored', 'matched')
      AND received_at < now() - make_interval(secs => :keep_seconds)
    ORDER BY received_at
    FOR UPDATE SKIP LOCKED
    LIMIT :batch_size
), deleted AS (
    DELETE FROM webhook_events AS event USING doomed WHERE event.id = doomed.id RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: prune_callback_attempts
-- Delete up to :batch_size logged attempts of deliveries that finished (delivered, failed, cancelled) over
-- :keep_seconds ago, oldest first (ix_callback_attempts_attempted_at): a delivery's log goes whole, once it is
-- old. A pending delivery's attempts are never candidates. Only the attempt rows are locked, never a delivery.
WITH doomed AS (
    SELECT attempt.id
    FROM callback_attempts AS attempt
    JOIN callback_deliveries AS delivery ON delivery.id = attempt.delivery_id
    WHERE attempt.attempted_at < now() - make_interval(secs => :keep_seconds)
      AND delivery.state IN ('delivered', 'failed', 'cancelled')
      AND delivery.finished_at < now() - make_interval(secs => :keep_seconds)
    ORDER BY attempt.attempted_at
    FOR UPDATE OF attempt SKIP LOCKED
    LIMIT :batch_size
), deleted AS (
    DELETE FROM callback_attempts AS attempt USING doomed WHERE attempt.id = doomed.id RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;
