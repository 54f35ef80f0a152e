"""History for the benchmarks: the gateway's big tables filled with `rows` rows of past traffic, in bulk SQL.

A gateway that has run for a while holds, for every video it made, the video row, its three archived assets,
the webhook event that told it the render was done, its finished archive jobs and the log of the callbacks it
sent; the pruner keeps the last 30 days of events, jobs and attempts (`VG_RETENTION__*`). `fill` writes that
history with `INSERT ... SELECT` over `generate_series` (one statement per table, no round trip per row):

- `videos`: `rows` completed renders, owned round-robin by every caller already there plus ten of history's
  own, created over the last 28 days (inside the pruner's window, so nothing is deleted while a benchmark
  measures) and older than every live video (negative `seq`: a caller's first page is still its live videos);
- `assets`: their three variants, archived and recently audited (so the worker's audit leaves them alone): 3 x
  `rows`;
- `webhook_events`: one `video.completed` per video (`enqueued`): `rows`;
- `archive_jobs`: one finished (`succeeded`) job per video, a sync or one of its downloads: `rows`;
- `callback_deliveries` and `callback_attempts`: every other video's `video.completed` callback, delivered at
  the second attempt: `rows / 2` deliveries, `rows` attempts;
- a bare baseline's own table of deliveries (`bench.verify_insert_app`), when named: `rows`.

Then `VACUUM (ANALYZE)` of each table and a `CHECKPOINT`, so neither autovacuum nor a checkpoint of the bulk
writes runs into the measurement that follows, and the planner knows the tables' new sizes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import asyncpg

HISTORY_CALLERS = 10
HISTORY_DAYS = 28
# History's own rows are recognised by these prefixes (`seq < 0` for videos).
DELIVERY_PREFIX = "whh_"

_CALLERS = "INSERT INTO callers (id, name) SELECT gen_random_uuid(), 'history-' || g FROM generate_series(1, $1) g"

_VIDEOS = """
WITH owners AS (SELECT array_agg(id ORDER BY created_at, id) AS ids FROM callers)
INSERT INTO videos (id, seq, caller_id, upstream_id, submitted_at, model, size, seconds, prompt, status, progress,
                    created_at, updated_at, completed_at, expires_at, refreshed_at, upstream_profile, origin)
SELECT 'video_' || md5(g::text) || left(md5('h' || g), 16), g - $1 - 1, o.ids[1 + g % cardinality(o.ids)],
       'video_' || md5('u' || g) || left(md5('v' || g), 16), t, 'sora-2', '720x1280', '4',
       'history #' || g || ': a slow pan over a harbour at dusk, gulls, warm light, 35 mm film grain',
       'completed', 100, t, t + interval '95 seconds', t + interval '90 seconds', t + interval '1 day',
       t + interval '90 seconds', 'default', 'create'
FROM generate_series(1, $1) g, owners o,
     LATERAL (SELECT now() - interval '1 day' * $2::float8 * (1 - g::float8 / $1) - interval '1 hour' AS t) past
"""

_ASSETS = """
INSERT INTO assets (id, video_id, variant, state, s3_key, content_type, bytes, sha256, created_at, updated_at,
                    audited_at)
SELECT gen_random_uuid(), v.id, x.variant, 'archived', 'videos/' || v.id || '/' || x.variant || '.' || x.ext,
       x.content_type, x.bytes, md5(v.id || x.variant) || md5(x.variant || v.id), v.completed_at,
       v.completed_at + interval '5 seconds', now()
FROM videos v
CROSS JOIN (VALUES ('video', 'mp4', 'video/mp4', 2097152), ('thumbnail', 'webp', 'image/webp', 24576),
                   ('spritesheet', 'jpg', 'image/jpeg', 196608)) AS x(variant, ext, content_type, bytes)
WHERE v.seq < 0
"""

_EVENTS = """
INSERT INTO webhook_events (id, webhook_id, event_id, event_type, upstream_profile, upstream_video_id, video_id,
                            outcome, body, received_at)
SELECT gen_random_uuid(), 'msg_' || md5('w' || v.id), 'evt_' || md5('e' || v.id), 'video.completed', 'default',
       v.upstream_id, v.id, 'enqueued',
       json_build_object('id', 'evt_' || md5('e' || v.id), 'object', 'event',
                         'created_at', extract(epoch FROM v.completed_at)::bigint, 'type', 'video.completed',
                         'data', json_build_object('id', v.upstream_id))::text,
       v.completed_at + interval '1 second'
FROM videos v WHERE v.seq < 0
"""

_JOBS = """
INSERT INTO archive_jobs (kind, video_id, variant, state, attempts, max_attempts, run_after, deadline, worker_id,
                          created_at, updated_at, finished_at)
SELECT CASE WHEN v.seq % 4 = 0 THEN 'sync' ELSE 'download' END, v.id,
       CASE WHEN v.seq % 4 = 0 THEN NULL ELSE (ARRAY['video', 'thumbnail', 'spritesheet'])[1 + abs(v.seq) % 3] END,
       'succeeded', 1, 8, v.completed_at, v.expires_at, 'history', v.completed_at,
       v.completed_at + interval '4 seconds', v.completed_at + interval '4 seconds'
FROM videos v WHERE v.seq < 0
"""

_DELIVERIES = """
INSERT INTO callback_deliveries (webhook_id, event_id, event_type, caller_id, video_id, url, payload, state, attempts,
                                 next_attempt_at, last_status, created_at, updated_at, finished_at)
SELECT $1 || md5(v.id), 'evt_' || md5('c' || v.id), 'video.completed', v.caller_id, v.id,
       'https://hooks.internal.example/video-events',
       json_build_object('id', 'evt_' || md5('c' || v.id), 'object', 'event', 'type', 'video.completed',
                         'created_at', extract(epoch FROM v.completed_at)::bigint,
                         'data', json_build_object('id', v.id, 'object', 'video', 'status', 'completed',
                                                   'model', v.model, 'seconds', v.seconds, 'size', v.size))::text,
       'delivered', 2, v.completed_at + interval '15 seconds', 200, v.completed_at + interval '5 seconds',
       v.completed_at + interval '15 seconds', v.completed_at + interval '15 seconds'
FROM videos v WHERE v.seq < 0 AND v.seq % 2 = 0
"""

_ATTEMPTS = """
INSERT INTO callback_attempts (delivery_id, attempt, attempted_at, address, outcome, status_code, error, duration_ms)
SELECT d.id, a, d.created_at + (a - 1) * interval '10 seconds', '10.0.0.7',
       CASE a WHEN 1 THEN 'http_error' ELSE 'delivered' END, CASE a WHEN 1 THEN 503 ELSE 200 END,
       CASE a WHEN 1 THEN 'HTTP 503' END, 40
FROM callback_deliveries d CROSS JOIN generate_series(1, 2) a
WHERE starts_with(d.webhook_id, $1)
"""

# A bare baseline's own table, named by the benchmark (never a caller's input).
_BASELINE = """
INSERT INTO {table} (webhook_id, body, received_at)
SELECT 'msg_hist' || md5(g::text),
       json_build_object('id', 'evt_' || md5('b' || g), 'object', 'event', 'type', 'video.completed',
                         'data', json_build_object('id', 'video_' || md5('u' || g)))::text,
       now() - interval '1 day' * $2::float8 * (1 - g::float8 / $1)
FROM generate_series(1, $1) g
"""


async def fill_async(dsn: str, rows: int, *, baseline_table: str | None = None) -> dict[str, Any]:
    """Write `rows` rows of history (see the module's docstring); returns rows written and seconds per table."""
    steps: list[tuple[str, str, tuple[Any, ...]]] = [
        ("callers", _CALLERS, (HISTORY_CALLERS,)),
        ("videos", _VIDEOS, (rows, HISTORY_DAYS)),
        ("assets", _ASSETS, ()),
        ("webhook_events", _EVENTS, ()),
        ("archive_jobs", _JOBS, ()),
        ("callback_deliveries", _DELIVERIES, (DELIVERY_PREFIX,)),
        ("callback_attempts", _ATTEMPTS, (DELIVERY_PREFIX,)),
    ]
    if baseline_table is not None:
        steps.append((baseline_table, _BASELINE.format(table=baseline_table), (rows, HISTORY_DAYS)))
    written: dict[str, int] = {}
    seconds: dict[str, float] = {}
    began = time.monotonic()
    connection = await asyncpg.connect(dsn)
    try:
        for table, sql, args in steps:
            started = time.monotonic()
            status = await connection.execute(sql, *args)
            written[table] = int(status.split()[-1])
            seconds[table] = time.monotonic() - started
            sys.stderr.write(f"  history: {written[table]} rows into {table} in {seconds[table]:.1f} s\n")
        started = time.monotonic()
        for table, _, _ in steps:
            await connection.execute(f'VACUUM (ANALYZE) "{table}"')
        await connection.execute("CHECKPOINT")
        seconds["vacuum analyze, checkpoint"] = time.monotonic() - started
    finally:
        await connection.close()
    return {"rows": rows, "written": written, "seconds": seconds, "total_seconds": time.monotonic() - began}


def fill(dsn: str, rows: int, *, baseline_table: str | None = None) -> dict[str, Any]:
    return asyncio.run(fill_async(dsn, rows, baseline_table=baseline_table))


def change_percent(before: float, after: float) -> float:
    """How much `after` differs from `before`, in % of `before` (positive: larger)."""
    return 100 * (after - before) / before
