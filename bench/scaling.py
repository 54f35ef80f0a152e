"""`docs/scaling.md`: a model of a large deployment (renders/day → API pods, worker pods, Postgres writes/s, S3
requests/s), recomputed from the per-process figures the benchmarks measured.

This module owns three things: what one render costs in Postgres write statements and S3 requests, counted from
the code paths and kept below as named constants (one per statement or request, with where it is made); which
measured figures the model reads (each from the newest results file that has it); and the arithmetic and the page.
`bench/report.py` calls `write_doc` whenever it regenerates `docs/benchmarks.md`, and `python -m bench report`
regenerates both from `bench/results/` without measuring, so the page is never edited by hand. A figure the
results lack is said to be missing where it would appear; nothing stands in for it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.archive.worker import WAKE_UP_SPACING_SECONDS
from app.core.config import S3Settings, WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS_DIR = ROOT / "docs"

NOT_MEASURED = "not measured in these results"

# ----- the deployment's assumptions (stated on the page) -------------------------------------------------

# Renders per day for the table's rows.
DEPLOYMENT_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
# The busiest hour runs at this multiple of the day's mean rate; every per-second figure is at that peak.
PEAK_FACTOR = 3.0
# Pods are sized to run at this share of the capacity one process showed, so a spike, a slow upstream or a lost
# pod does not put them at their limit.
HEADROOM = 0.6
# Fewer than two of either kind and one restart stops the service (API) or the archive (workers).
MIN_PODS = 2
# Calls by the caller per render besides the create: one retrieve once told (by callback) the video is archived.
# Callers that poll instead make more; each costs what a retrieve costs (below).
CLIENT_READS_PER_RENDER = 1
# One signed `video.completed` delivery per render (OpenAI's contract); a sender's retries add duplicates.
WEBHOOKS_PER_RENDER = 1
# The three variants archived per render (app/models/asset.py's Variant): the MP4, a thumbnail, a spritesheet.
ASSETS_PER_RENDER = 3
# MP4 sizes for the table of what the per-render counts become as renders grow (the archive benchmark's sizes).
MP4_SIZES = (100 * 2**20, 2**30, 4 * 2**30)

# ----- Postgres: write statements per render, counted from the code -------------------------------------------
# The path counted: a profile whose provider serves all three variants (OpenAI's), no provider limits (no
# admission control), no Idempotency-Key, one callback destination, nothing retried. "Write statement" is an
# INSERT, UPDATE or DELETE sent; a claim is counted once per job although one UPDATE may lease several.

# create: POST /v1/videos (app/videos/service.py VideoService.create → _send), in three transactions.
CREATE_RATE_WINDOW_UPSERT = 1  # INSERT ... ON CONFLICT DO UPDATE key_request_windows (app/limits lock_window)
CREATE_RATE_WINDOW_STORE = 1  # UPDATE key_request_windows: the key's request counted (store_window)
CREATE_VIDEO_INSERT = 1  # INSERT videos, committed before the paid call (_send → VideoRepository.add)
CREATE_VIDEO_UPDATE = 1  # UPDATE videos: upstream id and state from the create's answer (_send → _apply)
CREATE_WRITES = CREATE_RATE_WINDOW_UPSERT + CREATE_RATE_WINDOW_STORE + CREATE_VIDEO_INSERT + CREATE_VIDEO_UPDATE
CREATE_TRANSACTIONS = 3  # authentication + rate; the row before the paid call; the answer after it

# webhook: POST /v1/webhooks/... (app/webhooks/service.py receive), one transaction.
WEBHOOK_EVENT_INSERT = 1  # INSERT webhook_events ... ON CONFLICT DO NOTHING (WebhookRepository.record)
WEBHOOK_SYNC_ENQUEUE = 1  # INSERT archive_jobs, the sync job (app/archive/queries.sql `enqueue`)
WEBHOOK_WRITES = WEBHOOK_EVENT_INSERT + WEBHOOK_SYNC_ENQUEUE
WEBHOOK_TRANSACTIONS = 1

# sync job: re-read upstream, record the completion, queue the downloads (app/archive/jobs.py run_sync).
SYNC_CLAIM = 1  # UPDATE archive_jobs SET state = 'running' (queries.sql `claim`; Worker._claim)
SYNC_LEASE_CHECK = 1  # UPDATE archive_jobs: the lease renewed first in the fenced transaction (`heartbeat`)
SYNC_VIDEO_UPDATE = 1  # UPDATE videos: completed, expires_at (record_upstream_state → lifecycle.apply_upstream)
SYNC_ASSETS_INSERT = 1  # INSERT assets, three rows in one statement (ArchiveRepository.ensure_assets)
SYNC_DOWNLOADS_ENQUEUE = 3  # INSERT archive_jobs, one download per served variant (schedule_downloads → `enqueue`)
SYNC_FINISH = 1  # UPDATE archive_jobs SET state = 'succeeded' (queries.sql `finish`)
SYNC_WRITES = (
    SYNC_CLAIM + SYNC_LEASE_CHECK + SYNC_VIDEO_UPDATE + SYNC_ASSETS_INSERT + SYNC_DOWNLOADS_ENQUEUE + SYNC_FINISH
)
SYNC_TRANSACTIONS = 2  # the claim; the fenced write

# download job, per asset: stream upstream → S3 and record it (app/archive/jobs.py run_download).
DOWNLOAD_CLAIM = 1  # UPDATE archive_jobs (queries.sql `claim`)
DOWNLOAD_LEASE_CHECK_START = 1  # UPDATE archive_jobs (`heartbeat`), fencing the state change below
DOWNLOAD_ASSET_DOWNLOADING = 1  # UPDATE assets SET state = 'downloading' (set_unless_archived)
DOWNLOAD_LEASE_CHECK_END = 1  # UPDATE archive_jobs (`heartbeat`), fencing the record below
DOWNLOAD_ASSET_ARCHIVED = 1  # UPDATE assets SET state = 'archived', s3_key, bytes, sha256 (set_asset)
DOWNLOAD_FINISH = 1  # UPDATE archive_jobs SET state = 'succeeded' (queries.sql `finish`)
DOWNLOAD_WRITES = (
    DOWNLOAD_CLAIM
    + DOWNLOAD_LEASE_CHECK_START
    + DOWNLOAD_ASSET_DOWNLOADING
    + DOWNLOAD_LEASE_CHECK_END
    + DOWNLOAD_ASSET_ARCHIVED
    + DOWNLOAD_FINISH
)
DOWNLOAD_TRANSACTIONS = 3  # the claim; downloading; archived
# Size-dependent: one more UPDATE archive_jobs (Worker._heartbeat) every `heartbeat_seconds` a transfer lasts.

# callback: the last asset's transaction queues it; the worker's sender sends it (app/callbacks/delivery.py).
CALLBACK_OUTBOX_INSERT = 1  # INSERT callback_deliveries, per destination (on_video_event → add_deliveries)
CALLBACK_CLAIM = 1  # UPDATE callback_deliveries: attempts + 1, leased (claim_due; one statement per batch)
CALLBACK_SECRET_UPSERT = 1  # INSERT callback_secrets ... ON CONFLICT DO NOTHING (ensure_secret, per caller per batch)
CALLBACK_RECORD_UPDATE = 1  # UPDATE callback_deliveries SET state = 'delivered' (record_attempt)
CALLBACK_ATTEMPT_INSERT = 1  # INSERT callback_attempts, the attempt's log row (record_attempt)
CALLBACK_WRITES = (
    CALLBACK_OUTBOX_INSERT + CALLBACK_CLAIM + CALLBACK_SECRET_UPSERT + CALLBACK_RECORD_UPDATE + CALLBACK_ATTEMPT_INSERT
)
CALLBACK_TRANSACTIONS = 2  # the claim; the outcome (the outbox row rides on the last asset's transaction)

# retrieve by the caller: GET /v1/videos/{id} of a finished video reads only, past the key's rate.
READ_RATE_WINDOW_WRITES = CREATE_RATE_WINDOW_UPSERT + CREATE_RATE_WINDOW_STORE  # the same two as the create's
READ_TRANSACTIONS = 1

WRITES_PER_RENDER = (
    CREATE_WRITES
    + WEBHOOKS_PER_RENDER * WEBHOOK_WRITES
    + SYNC_WRITES
    + ASSETS_PER_RENDER * DOWNLOAD_WRITES
    + CALLBACK_WRITES
    + CLIENT_READS_PER_RENDER * READ_RATE_WINDOW_WRITES
)
TRANSACTIONS_PER_RENDER = (
    CREATE_TRANSACTIONS
    + WEBHOOKS_PER_RENDER * WEBHOOK_TRANSACTIONS
    + SYNC_TRANSACTIONS
    + ASSETS_PER_RENDER * DOWNLOAD_TRANSACTIONS
    + CALLBACK_TRANSACTIONS
    + CLIENT_READS_PER_RENDER * READ_TRANSACTIONS
)

# re-read of a render still in progress upstream: every `reconcile_interval_seconds` each worker's reconciler
# (app/archive/reconciler.py reconcile_once) queues a sync for every unfinished video not refreshed for that long,
# so a render is re-read about once per interval while it renders. A further sync queued by a webhook that names
# no video (Gemini's) costs the same.
REREAD_ENQUEUE = 1  # INSERT archive_jobs, the sync (queries.sql `enqueue`, in the reconciler's pass)
REREAD_CLAIM = 1  # UPDATE archive_jobs (queries.sql `claim`)
REREAD_LEASE_CHECK = 1  # UPDATE archive_jobs (`heartbeat`), fencing the write below
REREAD_VIDEO_UPDATE = 1  # UPDATE videos: refreshed_at, progress (Video.advance, even when nothing else changed)
REREAD_FINISH = 1  # UPDATE archive_jobs SET state = 'succeeded' (queries.sql `finish`)
REREAD_WRITES = REREAD_ENQUEUE + REREAD_CLAIM + REREAD_LEASE_CHECK + REREAD_VIDEO_UPDATE + REREAD_FINISH
REREAD_TRANSACTIONS = 2  # the claim; the fenced write (the enqueue rides on the reconciler's pass)
# Not measured (the provider's, and the simulator renders in no time): how long a render stays in progress
# upstream, which sets how many re-reads it gets.
ASSUMED_RENDER_SECONDS = 120.0

# What other paths add, per render (said on the page, not in the table's totals).
IDEMPOTENCY_WRITES = 3  # INSERT ... ON CONFLICT idempotency_records (claim), DELETE of expired ones, UPDATE (complete)
DERIVED_EXTRA_WRITES = 3  # an MP4-only provider: INSERT assets (no-op) + 2 INSERT archive_jobs once the MP4 is in
# Per worker process, idle or not: each loop turn sends the job claim and the callback sender's claim (UPDATEs
# that change no row when nothing is due), one turn per `poll_interval_seconds` when idle.
BACKGROUND_WRITES_PER_TICK = 2
# ... and, while deliveries arrive, one job claim per `WAKE_UP_SPACING_SECONDS` on the API's wake-ups (decision 014):
# every idle worker hears every NOTIFY, one finds the job.
WAKE_UP_CLAIMS_PER_SECOND = 1 / WAKE_UP_SPACING_SECONDS

# ----- S3: requests per render, counted from the code (app/archive/storage.py) --------------------------------
S3_SINGLE_PUT = 1  # PutObject with If-None-Match: * (upload_stream → _put_single), an asset of at most one part
S3_MULTIPART_CREATE = 1  # CreateMultipartUpload (_start_multipart), an asset above one part
S3_MULTIPART_COMPLETE = 1  # CompleteMultipartUpload with If-None-Match: * (_MultipartUpload.complete)
S3_MULTIPART_TAG = 1  # PutObjectTagging: the SHA-256, known only after the last part (_MultipartUpload._tag)
# ... plus one UploadPart per `part_size_bytes` (ceil(size / part size)).
# A variant derived from the archived MP4 (providers that serve only the MP4; app/archive/derive.py):
S3_DERIVE_HEAD = 1  # HeadObject of the MP4 (open_seekable: size and ETag)
S3_DERIVE_RANGED_GETS_AT_LEAST = 1  # GetObject with Range, as the decoder seeks (RangedObjectReader._refill)
S3_DERIVE_PUT = S3_SINGLE_PUT  # the image, always under one part
# Per worker process, not per render: the integrity audit HEADs `audit_batch_size` objects every
# `audit_interval_seconds` (app/archive/audit.py), plus GetObjectTagging for a multipart object.

PART_SIZE_BYTES: int = S3Settings.model_fields["part_size_bytes"].default
HEARTBEAT_SECONDS: float = WorkerSettings.model_fields["heartbeat_seconds"].default
POLL_INTERVAL_SECONDS: float = WorkerSettings.model_fields["poll_interval_seconds"].default
AUDIT_BATCH_SIZE: int = WorkerSettings.model_fields["audit_batch_size"].default
AUDIT_INTERVAL_SECONDS: float = WorkerSettings.model_fields["audit_interval_seconds"].default
RECONCILE_INTERVAL_SECONDS: float = WorkerSettings.model_fields["reconcile_interval_seconds"].default
# Upstream requests per render besides the re-reads: the create, the sync the webhook queues, the three downloads.
UPSTREAM_REQUESTS_PER_RENDER = 1 + 1 + ASSETS_PER_RENDER


def rereads_per_render(render_seconds: float = ASSUMED_RENDER_SECONDS) -> int:
    """Re-reads of a render in progress for `render_seconds`: one per reconcile interval it outlasts."""
    return math.floor(render_seconds / RECONCILE_INTERVAL_SECONDS)


def writes_per_render(render_seconds: float = ASSUMED_RENDER_SECONDS) -> int:
    return WRITES_PER_RENDER + rereads_per_render(render_seconds) * REREAD_WRITES


def transactions_per_render(render_seconds: float = ASSUMED_RENDER_SECONDS) -> int:
    return TRANSACTIONS_PER_RENDER + rereads_per_render(render_seconds) * REREAD_TRANSACTIONS


def s3_requests_for_asset(size_bytes: int, part_size_bytes: int = PART_SIZE_BYTES) -> int:
    """S3 requests to archive one asset of `size_bytes` from upstream (the bytes stream through; no read back)."""
    if size_bytes <= part_size_bytes:
        return S3_SINGLE_PUT
    parts = math.ceil(size_bytes / part_size_bytes)
    return S3_MULTIPART_CREATE + parts + S3_MULTIPART_COMPLETE + S3_MULTIPART_TAG


def s3_requests_per_render(mp4_bytes: int, part_size_bytes: int = PART_SIZE_BYTES) -> int:
    """The MP4 by its size; the thumbnail and spritesheet are far under one part (one PUT each)."""
    return s3_requests_for_asset(mp4_bytes, part_size_bytes) + (ASSETS_PER_RENDER - 1) * S3_SINGLE_PUT


# ----- measured figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One measured input: its value (None when no results file has it) and where it came from."""

    name: str
    value: float | None
    unit: str
    benchmark: str
    source: str = ""  # results file, commit and time; empty when not measured
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.value is not None and math.isfinite(self.value)


def _source(result: Mapping[str, Any]) -> str:
    git = result.get("git") or {}
    commit = str(git.get("commit") or "?")[:12]
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    return f"`{result.get('_file', '?')}`, commit `{commit}`{dirty}, {result.get('finished_at', '?')}"


def newest_first(results: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The results files, newest first (a smoke run measures nothing and is never read)."""
    listed = [results] if isinstance(results, Mapping) else list(results)
    kept = [result for result in listed if not result.get("smoke")]
    return sorted(kept, key=lambda result: str(result.get("finished_at", "")), reverse=True)


def pick(
    results: Sequence[Mapping[str, Any]],
    benchmark: str,
    name: str,
    unit: str,
    extract: Callable[[Mapping[str, Any]], float],
    note: str = "",
) -> Figure:
    """The figure from the newest results whose `benchmark` entry has it (a full run or an `--only` run)."""
    for result in results:
        entry = (result.get("benchmarks") or {}).get(benchmark)
        if entry is None:
            continue
        try:
            value = float(extract(entry))
        except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError, statistics.StatisticsError):
            continue  # written before this figure existed: an older or newer file may have it
        if math.isfinite(value):
            return Figure(name, value, unit, benchmark, _source(result), note)
    return Figure(name, None, unit, benchmark, "", note)


def _median(node: Mapping[str, Any], *path: str) -> float:
    for part in path:
        node = node[part]
    return float(node["median"])


def _bytes_per_render(burst: Mapping[str, Any]) -> float:
    per_repeat: list[float] = [raw["bytes"] / raw["videos"] for raw in burst["raw"]]
    return statistics.median(per_repeat)


def _efficiency(count: int) -> Callable[[Mapping[str, Any]], float]:
    """The burst's throughput with `count` workers over `count` times one worker's (1.0: linear)."""
    return lambda burst: float(burst["scaling"][str(count)]) / count


def _archive_rate(size: int) -> Callable[[Mapping[str, Any]], float]:
    """The archive benchmark's median MB/s for an asset of exactly `size` bytes."""
    return lambda archive: _median(archive["sizes"][str(size)], "summary", "gateway_mb_s")


def _size_label(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"


def _ranged_gets_per_image(gemini: Mapping[str, Any]) -> float:
    per_repeat: list[float] = [
        statistics.mean(
            raw["derive_reads"][f"{variant} ranged GETs"]["median"] for variant in ("thumbnail", "spritesheet")
        )
        for raw in gemini["raw"]
    ]
    return statistics.median(per_repeat)


def _syncs_per_video(gemini: Mapping[str, Any]) -> float:
    per_repeat: list[float] = [raw["archive_jobs"]["sync"] / raw["videos"] for raw in gemini["raw"]]
    return statistics.median(per_repeat)


@dataclass(frozen=True)
class Inputs:
    ingest_rps: Figure
    facade_rps: Figure
    worker_1: Figure
    scaling: dict[int, Figure]  # efficiency (throughput over count x one worker's), by worker count
    worker_derived: Figure  # the main burst's videos/s over its worker count: used when the 1-worker run is missing
    bytes_per_render: Figure
    mp4_bytes: Figure
    archive_mb_s: Figure
    insert_rps: Figure
    gemini_syncs: Figure
    gemini_ranged_gets: Figure
    archive_by_size: dict[int, Figure]  # MB/s one worker archives an MP4 of that size (one at a time)

    @property
    def worker_rate(self) -> Figure | None:
        """Videos/s one worker process archives among many: one worker's rate times the efficiency at the
        largest count measured; else the main burst's rate per worker (flagged); None when neither exists."""
        if self.worker_1.measured:
            assert self.worker_1.value is not None
            efficiencies = [figure for _, figure in sorted(self.scaling.items()) if figure.measured]
            if not efficiencies:
                return self.worker_1
            last = efficiencies[-1]
            assert last.value is not None
            return Figure(
                f"{self.worker_1.name} x efficiency at {last.name}",
                self.worker_1.value * last.value,
                "videos/s",
                "burst",
                self.worker_1.source,
            )
        return self.worker_derived if self.worker_derived.measured else None


def gather(results: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Inputs:
    """Every input of the model, each from the newest results that have it."""
    ordered = newest_first(results)
    scaling = {count: pick(ordered, "burst", f"{count} workers", "x", _efficiency(count)) for count in (2, 4)}
    return Inputs(
        ingest_rps=pick(
            ordered,
            "ingest",
            "webhook deliveries/s at p99 < 50 ms",
            "/s",
            lambda ingest: _median(ingest, "summary", "gateway_rps"),
        ),
        facade_rps=pick(
            ordered,
            "facade",
            "retrieves/s on one keep-alive connection, 1000 / p50 ms",
            "/s",
            lambda facade: 1000.0 / _median(facade, "summary", "gateway_retrieve_p50_ms"),
            note="one request at a time, so the process idles between them: a lower bound of its rate",
        ),
        worker_1=pick(
            ordered,
            "burst",
            "videos/s archived by 1 worker, release → last asset",
            "videos/s",
            lambda burst: _median(burst["by_workers"]["1"], "summary", "videos_per_s"),
        ),
        scaling=scaling,
        worker_derived=pick(
            ordered,
            "burst",
            "videos/s per worker: the burst's main run, its videos/s over its workers",
            "videos/s",
            lambda burst: burst["videos"] / _median(burst, "summary", "gateway_seconds") / burst["workers"],
            note="assumes the workers share the load evenly; the 1-worker figure replaces it once measured",
        ),
        bytes_per_render=pick(ordered, "burst", "bytes archived per render (3 assets)", "bytes", _bytes_per_render),
        mp4_bytes=pick(
            ordered,
            "burst",
            "MP4 bytes per render",
            "bytes",
            lambda burst: burst["asset_bytes"],
            note="the simulator's synthetic MP4; for larger renders see below",
        ),
        archive_mb_s=pick(
            ordered,
            "archive",
            "MB/s one worker archives, one asset at a time (smallest size)",
            "MB/s",
            lambda archive: _median(
                min(archive["sizes"].values(), key=lambda entry: entry["bytes"]), "summary", "gateway_mb_s"
            ),
        ),
        insert_rps=pick(
            ordered,
            "ingest",
            "verify + INSERT endpoint: deliveries/s at p99 < 50 ms, one INSERT each",
            "/s",
            lambda ingest: _median(ingest, "summary", "insert_rps"),
        ),
        gemini_syncs=pick(ordered, "burst_gemini", "sync jobs per video, Gemini burst", "", _syncs_per_video),
        gemini_ranged_gets=pick(
            ordered, "burst_gemini", "ranged S3 GETs per derived image, Gemini burst", "", _ranged_gets_per_image
        ),
        archive_by_size={
            size: pick(ordered, "archive", f"{_size_label(size)} MB/s", "MB/s", _archive_rate(size))
            for size in MP4_SIZES
        },
    )


# ----- the model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    renders_per_day: int
    peak_renders_s: float
    api_pods: int | None
    worker_pods: int | None
    pg_writes_s: float
    pg_transactions_s: float
    background_writes_s: float | None  # idle worker loops, by worker pods
    s3_requests_s: float | None
    audit_heads_s: float | None
    s3_ingress_mb_s: float | None
    stored_gb_per_day: float | None


def peak_rate(renders_per_day: int) -> float:
    return renders_per_day / 86_400 * PEAK_FACTOR


def api_pods(peak_renders_s: float, inputs: Inputs) -> int | None:
    """Each API process's time shared between webhook deliveries (at the ingest rate) and caller requests
    (create and reads, at the facade's rate), at `HEADROOM` of each; None when either rate is missing."""
    if not (inputs.ingest_rps.measured and inputs.facade_rps.measured):
        return None
    assert inputs.ingest_rps.value is not None and inputs.facade_rps.value is not None
    webhooks = peak_renders_s * WEBHOOKS_PER_RENDER / (inputs.ingest_rps.value * HEADROOM)
    requests = peak_renders_s * (1 + CLIENT_READS_PER_RENDER) / (inputs.facade_rps.value * HEADROOM)
    return max(MIN_PODS, math.ceil(webhooks + requests))


def worker_pods(peak_renders_s: float, inputs: Inputs) -> int | None:
    """Enough worker processes for the renders (at the burst's rate per worker) and for their bytes (at the
    archive's MB/s, when measured), at `HEADROOM`; None when no burst rate is measured."""
    rate = inputs.worker_rate
    if rate is None or rate.value is None:
        return None
    needed = peak_renders_s / (rate.value * HEADROOM)
    if inputs.archive_mb_s.measured and inputs.bytes_per_render.measured:
        assert inputs.archive_mb_s.value is not None and inputs.bytes_per_render.value is not None
        mb_s = peak_renders_s * inputs.bytes_per_render.value / 1e6
        needed = max(needed, mb_s / (inputs.archive_mb_s.value * HEADROOM))
    return max(MIN_PODS, math.ceil(needed))


def row(renders_per_day: int, inputs: Inputs) -> Row:
    peak = peak_rate(renders_per_day)
    workers = worker_pods(peak, inputs)
    per_render_bytes = inputs.bytes_per_render.value if inputs.bytes_per_render.measured else None
    mp4 = inputs.mp4_bytes.value if inputs.mp4_bytes.measured else None
    return Row(
        renders_per_day=renders_per_day,
        peak_renders_s=peak,
        api_pods=api_pods(peak, inputs),
        worker_pods=workers,
        pg_writes_s=peak * writes_per_render(),
        pg_transactions_s=peak * transactions_per_render(),
        background_writes_s=None
        if workers is None
        else workers * (BACKGROUND_WRITES_PER_TICK / POLL_INTERVAL_SECONDS + WAKE_UP_CLAIMS_PER_SECOND),
        s3_requests_s=None if mp4 is None else peak * s3_requests_per_render(int(mp4)),
        audit_heads_s=None if workers is None else workers * AUDIT_BATCH_SIZE / AUDIT_INTERVAL_SECONDS,
        s3_ingress_mb_s=None if per_render_bytes is None else peak * per_render_bytes / 1e6,
        stored_gb_per_day=None if per_render_bytes is None else renders_per_day * per_render_bytes / 1e9,
    )


# ----- the page -------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return NOT_MEASURED
    return f"{value:,.{digits}f}"


def _figure_value(figure: Figure) -> str:
    if not figure.measured:
        return f"**{NOT_MEASURED}**"
    assert figure.value is not None
    if figure.unit == "x":
        return f"{100 * figure.value:.0f} % of linear"
    if figure.unit == "bytes":
        return f"{figure.value:,.0f} bytes ({figure.value / 2**20:.2f} MiB)"
    digits = 0 if figure.value >= 100 else 1 if figure.value >= 10 else 2
    separator = "" if figure.unit.startswith("/") else " "
    return f"{figure.value:,.{digits}f}{separator}{figure.unit}".rstrip()


def render(results: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    inputs = gather(results)
    rows = [row(size, inputs) for size in DEPLOYMENT_SIZES]
    lines = [
        "# Scaling: a model of a large deployment",
        "",
        "<!-- Generated by `python -m bench` (bench/scaling.py) from bench/results/; edit bench/scaling.py. -->",
        "",
        "What a deployment of a given size needs (API pods, worker pods, Postgres writes/s, S3 requests/s), "
        "computed from the per-process figures the benchmarks measured ([benchmarks.md](benchmarks.md)) and the "
        "work one render costs, counted from the code. It is arithmetic, not a measurement of a cluster: every "
        "per-process figure was measured on one 2-core machine that also ran Postgres, SeaweedFS, the simulator "
        "and the load generator, so a pod with cores of its own does more, and the pod counts here err high. "
        "Regenerated with the benchmarks, or from the results alone:",
        "",
        "```sh",
        "python -m bench report      # docs/benchmarks.md and docs/scaling.md from bench/results/, nothing measured",
        "```",
        "",
        "## Inputs: measured per process",
        "",
        "Each from the newest results file that has it (a full run or a benchmark run alone).",
        "",
        "| Per | Figure | Value | Benchmark | Results |",
        "|---|---|---|---|---|",
    ]
    per_worker = [inputs.worker_1, *inputs.scaling.values(), inputs.worker_derived, inputs.archive_mb_s]
    for per, figures in (
        ("API process", [inputs.ingest_rps, inputs.facade_rps]),
        ("worker process", per_worker),
        ("render", [inputs.bytes_per_render, inputs.mp4_bytes, inputs.gemini_syncs, inputs.gemini_ranged_gets]),
        ("Postgres (baseline)", [inputs.insert_rps]),
    ):
        for figure in figures:
            name = f"scaling efficiency at {figure.name}" if figure.unit == "x" else figure.name
            note = f" ({figure.note})" if figure.note else ""
            lines.append(
                f"| {per} | {name}{note} | {_figure_value(figure)} | {figure.benchmark} | {figure.source or '-'} |"
            )
    rate = inputs.worker_rate
    lines += ["", _worker_rate_sentence(inputs, rate), ""]
    lines += _work_section(inputs)
    lines += _table_section(inputs, rows)
    lines += _sizes_section(inputs)
    lines += _limits_section(inputs, rows)
    return "\n".join(lines) + "\n"


def _worker_rate_sentence(inputs: Inputs, rate: Figure | None) -> str:
    if rate is None or rate.value is None:
        return f"Worker pods: **{NOT_MEASURED}** (no burst in the results), so the table cannot size them."
    if rate is inputs.worker_derived:
        return (
            f"Worker pods are sized at **{rate.value:.2f} videos/s per worker**: the burst with 1 worker, and the "
            f"scaling at 2 and 4, are {NOT_MEASURED}, so this is the main burst's rate divided by its workers. "
            "The next full run (`python -m bench run`, the burst with 1, 2 and 4 workers) replaces it."
        )
    return (
        f"Worker pods are sized at **{rate.value:.2f} videos/s per worker** ({rate.name}): the efficiency of the "
        "largest count measured, though on this machine its workers shared 2 cores with everything else, so it "
        "says more about the machine than about workers on cores of their own."
    )


def _work_section(inputs: Inputs) -> list[str]:
    mp4 = int(inputs.mp4_bytes.value) if inputs.mp4_bytes.measured and inputs.mp4_bytes.value else None
    lines = [
        "## Work per render, counted from the code",
        "",
        "The path counted: a profile whose provider serves all three variants (OpenAI's), no provider limits, no "
        "`Idempotency-Key`, one callback destination, nothing retried, and the caller reading the video once after "
        "its callback. A write is an INSERT, UPDATE or DELETE statement sent; a claim is counted once per job, "
        "although one UPDATE leases as many jobs as a worker has free slots. The counts are the constants of "
        "`bench/scaling.py`.",
        "",
        "| Stage | Postgres write statements | Transactions | What they are |",
        "|---|---|---|---|",
        f"| create (`POST /v1/videos`) | {CREATE_WRITES} | {CREATE_TRANSACTIONS} | the key's request-rate row: "
        "INSERT ... ON CONFLICT DO UPDATE + UPDATE; INSERT videos, committed before the paid call; UPDATE videos "
        "with upstream's answer |",
        f"| webhook delivery | {WEBHOOK_WRITES} | {WEBHOOK_TRANSACTIONS} | INSERT webhook_events ... ON CONFLICT "
        "DO NOTHING; INSERT archive_jobs (the sync) |",
        f"| sync job | {SYNC_WRITES} | {SYNC_TRANSACTIONS} | claim UPDATE; lease-check UPDATE; UPDATE videos "
        f"(completed); INSERT assets (3 rows, one statement); {SYNC_DOWNLOADS_ENQUEUE} x INSERT archive_jobs "
        "(downloads); finish UPDATE |",
        f"| download job, x {ASSETS_PER_RENDER} assets | {ASSETS_PER_RENDER} x {DOWNLOAD_WRITES} | "
        f"{ASSETS_PER_RENDER} x {DOWNLOAD_TRANSACTIONS} | claim UPDATE; lease-check UPDATE + UPDATE assets "
        "(downloading); lease-check UPDATE + UPDATE assets (archived) + finish UPDATE; plus one heartbeat UPDATE "
        f"per {HEARTBEAT_SECONDS:g} s a transfer lasts |",
        f"| callback | {CALLBACK_WRITES} | {CALLBACK_TRANSACTIONS} | INSERT callback_deliveries (in the last "
        "asset's transaction); claim UPDATE; INSERT callback_secrets ... ON CONFLICT DO NOTHING (per caller and "
        "batch); UPDATE callback_deliveries + INSERT callback_attempts |",
        f"| caller's retrieve, x {CLIENT_READS_PER_RENDER} | {CLIENT_READS_PER_RENDER} x {READ_RATE_WINDOW_WRITES}"
        f" | {CLIENT_READS_PER_RENDER} x {READ_TRANSACTIONS} | the key's request-rate row, as for the create; the "
        "read itself writes nothing |",
        f"| **the path above** | **{WRITES_PER_RENDER}** | **{TRANSACTIONS_PER_RENDER}** | |",
        f"| re-reads while it renders, x {rereads_per_render()} | {rereads_per_render()} x {REREAD_WRITES} "
        f"| {rereads_per_render()} x {REREAD_TRANSACTIONS} | one per `reconcile_interval_seconds` "
        f"({RECONCILE_INTERVAL_SECONDS:g} s) of a render of {ASSUMED_RENDER_SECONDS:g} s (assumed: not measured): "
        "INSERT archive_jobs; claim UPDATE; lease-check UPDATE; UPDATE videos (refreshed_at); finish UPDATE |",
        f"| **one render** | **{writes_per_render()}** | **{transactions_per_render()}** | |",
        "",
        f"Other paths add: an `Idempotency-Key` on the create {IDEMPOTENCY_WRITES} (claim INSERT ... ON CONFLICT, "
        "DELETE of expired records, UPDATE with the answer); each further callback destination "
        f"{CALLBACK_WRITES}, each retried callback attempt {CALLBACK_WRITES - CALLBACK_OUTBOX_INSERT}; each further "
        f"authenticated request {READ_RATE_WINDOW_WRITES}; a duplicate webhook 1 (an INSERT that conflicts); a "
        f"provider that serves only the MP4 (Gemini) {DERIVED_EXTRA_WRITES} more (the derived images are queued "
        "once the MP4 is in), and each further sync job "
        f"{REREAD_WRITES}: its events name no video, so every unfinished video of the profile is re-read"
        + (
            f" ({_figure_value(inputs.gemini_syncs)} per video in the Gemini burst)."
            if inputs.gemini_syncs.measured
            else "."
        ),
        "",
        f"S3, per asset archived from upstream: one PutObject (with `If-None-Match: *`) up to one part "
        f"(`VG_S3__PART_SIZE_BYTES`, {PART_SIZE_BYTES / 2**20:g} MiB by default), else CreateMultipartUpload + "
        "ceil(size / part size) x UploadPart + CompleteMultipartUpload + PutObjectTagging (the SHA-256, known only "
        "after the last part). No HEAD and no GET on this path: the bytes stream through, and a HEAD is made only "
        "when another writer got to the same key first. The thumbnail and the spritesheet are always under one "
        f"part; a derived one (providers that serve only the MP4) costs {S3_DERIVE_HEAD} HeadObject of the MP4, at "
        f"least {S3_DERIVE_RANGED_GETS_AT_LEAST} ranged GetObject as the decoder seeks"
        + (
            f" ({_figure_value(inputs.gemini_ranged_gets)} per image in the Gemini burst)"
            if inputs.gemini_ranged_gets.measured
            else ""
        )
        + f", and {S3_DERIVE_PUT} PutObject.",
        "",
    ]
    if mp4 is None:
        lines += [f"S3 requests per render for the burst's MP4 size: **{NOT_MEASURED}** (no burst in the results).", ""]
    else:
        lines += [
            f"For the burst's renders ({mp4 / 2**20:g} MiB MP4): **{s3_requests_per_render(mp4)} S3 requests per "
            "render**, all PutObject.",
            "",
        ]
    return lines


def _table_section(inputs: Inputs, rows: list[Row]) -> list[str]:
    lines = [
        "## Deployment sizes",
        "",
        f"Assumptions: the busiest hour runs at {PEAK_FACTOR:g}x the day's mean rate, and every per-second figure "
        f"is at that peak; pods run at no more than {100 * HEADROOM:.0f} % of the capacity one process showed; at "
        f"least {MIN_PODS} pods of each kind; renders the size of the burst's. API pods: the peak's webhook "
        "deliveries at the ingest rate plus its caller requests (the create and "
        f"{CLIENT_READS_PER_RENDER} retrieve per render) at the facade's rate, a create counted as one retrieve "
        "(its own rate is not measured). Worker pods: the peak's renders at the rate per worker above, or its bytes "
        "at the archive's MB/s per worker if that needs more. Postgres: the write statements (and transactions) per "
        f"render above, re-reads of a {ASSUMED_RENDER_SECONDS:g} s render included; idle worker loops add their "
        "claims (UPDATEs that change no row) on top, at most "
        f"{BACKGROUND_WRITES_PER_TICK} per worker every {POLL_INTERVAL_SECONDS:g} s, and while deliveries arrive one "
        f"more per worker every {WAKE_UP_SPACING_SECONDS:g} s on the API's wake-ups (decision 014; an upper bound: "
        "a busy worker claims real work instead). S3: the requests per render "
        f"above, plus the integrity audit's {AUDIT_BATCH_SIZE} HEADs per worker every {AUDIT_INTERVAL_SECONDS:g} s. "
        "Storage: archived objects are kept (retention prunes rows, not objects), so it grows by this much a day.",
        "",
        "| Renders/day | Peak renders/s | API pods | Worker pods | Postgres writes/s (transactions/s) at peak "
        "| + idle worker claims/s | S3 requests/s at peak | + audit HEADs/s | S3 ingress MB/s at peak "
        "| Storage per day |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in rows:
        stored = (
            NOT_MEASURED
            if entry.stored_gb_per_day is None
            else f"{_gigabytes(entry.stored_gb_per_day)} ({_gigabytes(entry.stored_gb_per_day * 365)}/year)"
        )
        lines.append(
            f"| {entry.renders_per_day:,} | {entry.peak_renders_s:,.2f} | {_num(entry.api_pods)} "
            f"| {_num(entry.worker_pods)} | {entry.pg_writes_s:,.0f} ({entry.pg_transactions_s:,.0f}) "
            f"| {_num(entry.background_writes_s)} | {_num(entry.s3_requests_s, 1)} | {_num(entry.audit_heads_s, 1)} "
            f"| {_num(entry.s3_ingress_mb_s, 1)} | {stored} |"
        )
    lines += [""]
    return lines


def _gigabytes(gb: float) -> str:
    return f"{gb / 1000:,.1f} TB" if gb >= 1000 else f"{gb:,.1f} GB"


def _sizes_section(inputs: Inputs) -> list[str]:
    reference = DEPLOYMENT_SIZES[len(DEPLOYMENT_SIZES) // 2]
    peak = peak_rate(reference)
    lines = [
        "## Larger renders",
        "",
        "What grows with the MP4: its UploadParts, and the heartbeats of a transfer that outlasts "
        f"`heartbeat_seconds` ({HEARTBEAT_SECONDS:g} s), timed at the archive benchmark's MB/s for that size (one "
        "worker, one asset at a time: a lower bound of a worker's rate, which runs "
        f"{WorkerSettings.model_fields['concurrency'].default} jobs at once). With renders this large, worker pods "
        f"are set by bytes rather than by renders; shown for {reference:,} renders/day ({peak:.1f} renders/s at "
        "peak), at the same headroom.",
        "",
        "| MP4 | S3 requests per render | Postgres writes per render | Archive MB/s (one worker) | Transfer "
        f"| S3 ingress MB/s at peak | Worker pods for {reference:,} renders/day |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in MP4_SIZES:
        figure = inputs.archive_by_size.get(size)
        ingress = peak * size / 1e6
        if figure is None or figure.value is None or not figure.measured:
            rate, transfer, pods = f"**{NOT_MEASURED}**", "-", NOT_MEASURED
            writes = f"{writes_per_render()} + one per {HEARTBEAT_SECONDS:g} s of transfer"
        else:
            seconds = size / 1e6 / figure.value
            rate, transfer = f"{figure.value:,.1f}", f"{seconds:,.0f} s"
            writes = str(writes_per_render() + math.floor(seconds / HEARTBEAT_SECONDS))
            pods = f"{max(MIN_PODS, math.ceil(ingress / (figure.value * HEADROOM))):,}"
        lines.append(
            f"| {_size_label(size)} | {s3_requests_per_render(size)} | {writes} | {rate} | {transfer} "
            f"| {ingress:,.0f} | {pods} |"
        )
    sources = sorted({figure.source for figure in inputs.archive_by_size.values() if figure.measured})
    lines += ["", f"Archive figures from {', '.join(sources)}." if sources else "", ""]
    return lines


def _limits_section(inputs: Inputs, rows: list[Row]) -> list[str]:
    biggest = rows[-1]
    if inputs.insert_rps.measured:
        assert inputs.insert_rps.value is not None
        postgres = (
            f"The only Postgres figure in the results is the verify + INSERT endpoint's rate, "
            f"{inputs.insert_rps.value:,.0f} single-INSERT transactions/s from one process on this machine: a lower "
            "bound of what this Postgres commits, not its capacity. At the largest size above the model asks "
            f"{biggest.pg_transactions_s:,.0f} transactions/s ({biggest.pg_writes_s:,.0f} write statements/s) at "
            f"peak, {biggest.pg_transactions_s / inputs.insert_rps.value:.1f}x that figure."
        )
    else:
        postgres = (
            f"The verify + INSERT endpoint's rate (a lower bound of one Postgres's insert rate on this machine) is "
            f"{NOT_MEASURED}, so the model's {biggest.pg_writes_s:,.0f} write statements/s at the largest size are "
            "compared with nothing measured."
        )
    return [
        "## What this does not model",
        "",
        f"- **Postgres capacity itself.** {postgres} Commits (fsync), not statements, usually set the limit; "
        "connection counts (each API and worker process has its own pool) and the rows that accumulate until the "
        "pruner deletes them matter at scale too.",
        "- **The network between pods**, and between pods and S3 or Postgres: every figure was measured over "
        "loopback. Each render's bytes cross the network twice (upstream → worker → S3).",
        "- **Provider-side limits**: upstream's rate limits, its render time and how long its download links stay "
        "valid (which bounds how far the archive may fall behind); provider limits in the gateway "
        "([admission.md](admission.md)) queue creates instead of sending them. What upstream sees: "
        f"{UPSTREAM_REQUESTS_PER_RENDER + rereads_per_render()} requests per render (the create, "
        f"{rereads_per_render() + 1} reads of the video, {ASSETS_PER_RENDER} downloads), "
        f"{biggest.peak_renders_s * (UPSTREAM_REQUESTS_PER_RENDER + rereads_per_render()):,.0f}/s at the largest "
        "size's peak.",
        "- **The workers' time for re-reads**: the burst times one sync per video; the re-reads of renders in "
        "progress are further short jobs (an upstream GET and one transaction each) that the worker pods above do "
        "not count.",
        "- **S3's own limits** (requests per second per prefix, throughput per connection), and its cost.",
        "- **Callers' content downloads**: through the gateway each is an S3 GetObject plus the bytes through an API "
        "pod (the facade's content MB/s); through a presigned URL, an S3 GetObject only.",
        "- **Failures and retries**: a retried webhook, job or callback adds its statements and requests (see above); "
        "the soak ([benchmarks.md](benchmarks.md)) checks they converge, not what they cost.",
        "- **The create's own cost** on an API process (an upstream call, three transactions): counted as one "
        "retrieve.",
        "",
    ]


# ----- files ----------------------------------------------------------------------------------------------


def load_results(results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every benchmark results file (full runs `<date>.json` and `--only` runs `<date>-<name>.json`)."""
    loaded: list[dict[str, Any]] = []
    for path in sorted(results_dir.glob("20??-??-??*.json")):
        result: dict[str, Any] = json.loads(path.read_text())
        try:
            result["_file"] = str(path.relative_to(ROOT))
        except ValueError:  # a directory outside the repository (`--out`, tests)
            result["_file"] = path.name
        loaded.append(result)
    return loaded


def write_doc(results_dir: Path = RESULTS_DIR, docs_dir: Path = DOCS_DIR) -> Path:
    """Regenerate docs/scaling.md from the results in `results_dir`."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    path = docs_dir / "scaling.md"
    path.write_text(render(load_results(results_dir)))
    return path
