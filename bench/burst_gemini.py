"""Benchmark 5, a burst through the Gemini simulator, derivation included: Veo renders archived, images derived.

The shape of benchmark 3 (bench/burst.py), on the `veo` profile (kind `gemini`): the renders are created
through the gateway with model `veo-3.1-fast-generate-preview` and held in progress by the Gemini simulator
until their MP4s are drawn, then released together: `POST /_sim/finish-renders` makes them complete evenly
spread over the burst window, each sending its signed `video.generated` webhook (an event that names no
video: the gateway re-reads its unfinished videos). Google serves only the MP4, so per video the workers
archive the MP4 and then derive the thumbnail and the spritesheet from the archived copy (ranged reads from
S3 and a PyAV decode, app/archive/derive.py). The MP4s are real renders at a low frame rate (`FPS`), since
derivation needs a decodable file; synthetic assets would not do.

Timed from the release to the last asset archived (all three variants of every video); per video, from
its first webhook attempt to its last asset archived. A missed deadline is an asset that ended
`expired`/`failed` or landed after the video's `expires_at`.

Baseline, same run: the shortest honest pipe moving the same MP4s (the webhooks' file URIs,
`GET /v1beta/files/{id}:download?alt=media` with the key, following its 302 to the file host as the gateway
does) with the same parallelism (two processes, each as many uploads at once as a worker runs jobs). The
pipe has nothing to derive: how much of the gateway's time went into deriving is reported beside the ratio,
from the workers' own job timings (their `job ... ran in` lines, logged at INFO for this benchmark: the
share of the workers' job-seconds after the release spent deriving, and re-reading operations in syncs)
and from the assets' landing times (what is left after the last MP4 is archived).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.drive import create_videos, first_attempts, run_pipe, wait_for
from bench.stack import SIMULATOR_KEY, VEO_MODEL, BenchStack, full_stack, rows
from bench.stats import percentile, spread

WORKERS = 2
WORKER_CONCURRENCY = 4
VARIANTS = ("video", "thumbnail", "spritesheet")
DERIVED = ("thumbnail", "spritesheet")
# Frames per second of the simulator's renders: 4 s at 1280x720 and 2 fps is 8 frames, about a third of a
# second to draw, so a thousand renders are drawn in a few minutes on two cores.
FPS = 2
SIZE = "1280x720"
JOB_LINE = re.compile(
    r"^job \d+ \((?P<kind>sync|download) \S+(?: (?P<variant>\w+))?\) attempt \d+ ran in (?P<s>[\d.]+)s$"
)
DERIVE_LINE = re.compile(
    r"^derived the (?P<variant>\w+) from \S+: (?P<read>\d+) of (?P<size>\d+) bytes read in (?P<gets>\d+) ranged GETs$"
)


def run(workdir: Path, *, videos: int, repeats: int, window_seconds: float, fps: int = FPS) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        "gateway_seconds": [],
        "pipe_seconds": [],
        "ratio": [],
        "p50_latency_s": [],
        "p99_latency_s": [],
        "missed_deadlines": [],
        "after_last_webhook_s": [],
        "after_last_mp4_s": [],
        "derive_share": [],
        "sync_share": [],
        "slots_busy": [],
        "mp4_job_p50_s": [],
        "derive_job_p50_s": [],
    }
    raw: list[dict[str, Any]] = []
    env = {"VG_WORKER__CONCURRENCY": str(WORKER_CONCURRENCY)}
    gemini_env = {"VG_SIMULATOR__FPS": str(fps)}
    # The per-job timings come from the workers' INFO lines (a few per job); the API stays at WARNING.
    worker_env = {"VG_LOG_LEVEL": "INFO"}
    for repeat in range(repeats):
        # A fresh stack per repeat: the previous burst's rows and objects would otherwise weigh on this one.
        with full_stack(
            workdir / f"burst-gemini-{repeat}",
            workers=WORKERS,
            env=env,
            gemini=True,
            gemini_env=gemini_env,
            worker_env=worker_env,
        ) as stack:
            stack.gemini_config(queue_seconds=0, render_seconds=3600)
            keys = [stack.new_caller_key() for _ in range(4)]
            created_at = time.monotonic()
            create_videos(stack, keys, videos, concurrency=16, prompt="burst", model=VEO_MODEL, size=SIZE)
            _wait_renders_drawn(stack, videos)
            drawn_seconds = time.monotonic() - created_at
            with stack.gemini_sim() as sim:
                released_at = time.time()
                released = sim.post("/_sim/finish-renders", json={"over_seconds": window_seconds}).json()["released"]
            if released != videos:
                raise RuntimeError(f"released {released} of {videos} renders")
            asyncio.run(
                wait_for(
                    stack.dsn,
                    "SELECT count(*) FROM assets WHERE state IN ('archived', 'failed', 'expired')",
                    lambda count: count >= 3 * videos,
                    within=1800,
                    interval=0.2,
                )
            )
            assets = rows(
                stack.dsn,
                "SELECT v.upstream_id, a.variant, a.state, a.bytes, extract(epoch FROM a.updated_at)::float AS done, "
                "a.updated_at > v.expires_at AS late FROM assets a JOIN videos v ON v.id = a.video_id",
            )
            jobs = {
                record["kind"]: record["jobs"]
                for record in rows(stack.dsn, "SELECT kind, count(*) AS jobs FROM archive_jobs GROUP BY kind")
            }
            last_asset: dict[str, float] = {}
            for asset in assets:
                last_asset[asset["upstream_id"]] = max(last_asset.get(asset["upstream_id"], 0.0), asset["done"])
            mp4_done = [asset["done"] for asset in assets if asset["variant"] == "video"]
            deliveries = stack.gemini_deliveries()
            webhook_at = first_attempts(deliveries, key="operation_name")
            latencies = [done - webhook_at[upstream] for upstream, done in last_asset.items() if upstream in webhook_at]
            missed = sum(1 for asset in assets if asset["state"] != "archived" or asset["late"])
            gateway_seconds = max(last_asset.values()) - released_at
            # The MP4 of each released render, at the URI its webhook carried (the gateway reads the same).
            file_uris = {delivery["operation_name"]: delivery["video_uri"] for delivery in deliveries}
            urls = [file_uris[upstream] for upstream in last_asset if upstream in file_uris]
            pipe = run_pipe(
                stack,
                urls,
                workdir=workdir,
                threads=WORKER_CONCURRENCY,
                processes=WORKERS,
                headers={"x-goog-api-key": SIMULATOR_KEY},
                follow_redirects=True,
            )
            simulator_stats = _simulator_stats(stack)
        # Read once the workers have stopped: every line is in their logs.
        timings = worker_timings(stack.logs, since=released_at)
        busy = timings["busy_since"]
        busy_seconds = sum(busy.values())
        derive_seconds = sum(busy.get(f"derive {variant}", 0.0) for variant in DERIVED)
        derive_jobs = [s for variant in DERIVED for s in timings["jobs"].get(f"derive {variant}", [])]
        samples["gateway_seconds"].append(gateway_seconds)
        samples["pipe_seconds"].append(pipe["seconds"])
        samples["ratio"].append(gateway_seconds / pipe["seconds"])
        samples["p50_latency_s"].append(percentile(latencies, 50))
        samples["p99_latency_s"].append(percentile(latencies, 99))
        samples["missed_deadlines"].append(float(missed))
        # The release window is a floor for the gateway's time (the last video completes at its end).
        samples["after_last_webhook_s"].append(max(last_asset.values()) - max(webhook_at.values()))
        # What is left once every MP4 is in: only derivations (and their queue) run after that.
        samples["after_last_mp4_s"].append(max(last_asset.values()) - max(mp4_done))
        samples["derive_share"].append(derive_seconds / busy_seconds if busy_seconds else math.nan)
        samples["sync_share"].append(busy.get("sync", 0.0) / busy_seconds if busy_seconds else math.nan)
        # Job slots in use after the release, of the 2 x 4 the workers have: near 1, the jobs' own time bounds.
        samples["slots_busy"].append(busy_seconds / (WORKERS * WORKER_CONCURRENCY * gateway_seconds))
        samples["mp4_job_p50_s"].append(percentile(timings["jobs"].get("download video", []), 50))
        samples["derive_job_p50_s"].append(percentile(derive_jobs, 50))
        raw.append(
            {
                "videos": videos,
                "assets": len(assets),
                "mp4_bytes": sum(int(asset["bytes"] or 0) for asset in assets if asset["variant"] == "video"),
                "derived_bytes": sum(int(asset["bytes"] or 0) for asset in assets if asset["variant"] in DERIVED),
                "gateway_seconds": gateway_seconds,
                "webhooks_seen": len(latencies),
                "webhook_deliveries": len(deliveries),
                "renders_drawn_seconds": drawn_seconds,
                "archive_jobs": jobs,
                "job_seconds": {
                    name: spread(values) | {"total": sum(values), "after_release": busy.get(name, 0.0)}
                    for name, values in timings["jobs"].items()
                },
                "derive_reads": timings["derive_reads"],
                "simulator_requests": simulator_stats.get("requests", {}),
                "pipe": pipe,
            }
        )
    return {
        "summary": {name: spread(values) for name, values in samples.items()},
        "samples": samples,
        "raw": raw,
        "videos": videos,
        "window_seconds": window_seconds,
        "fps": fps,
        "size": SIZE,
        "workers": WORKERS,
        "worker_concurrency": WORKER_CONCURRENCY,
    }


def _wait_renders_drawn(stack: BenchStack, videos: int, timeout: float = 1800) -> None:
    """Every render created upstream and its MP4 drawn (the operations still run: `render_seconds` is long)."""
    deadline = time.monotonic() + timeout
    with stack.gemini_sim() as sim:
        while True:
            stats = sim.get("/_sim/stats").json()
            if stats["operations_created"] >= videos and stats["renders_pending"] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"renders still drawing: {stats}")
            time.sleep(0.5)


def _simulator_stats(stack: BenchStack) -> dict[str, Any]:
    with stack.gemini_sim() as sim:
        stats: dict[str, Any] = sim.get("/_sim/stats").raise_for_status().json()
        return stats


def worker_timings(logs: Path, *, since: float) -> dict[str, Any]:
    """Job runs from the workers' JSON logs, by what the job did, and the derivations' S3 reads.

    Names: `sync`, `download video` (the MP4 from upstream), `derive thumbnail`, `derive spritesheet` (a
    download job of a variant Google does not serve: made from the archived MP4). `jobs` holds every run's
    seconds; `busy_since` the job-seconds spent after `since` (epoch seconds; a run is logged when it ends, so
    it covers the `ran in` seconds before its timestamp): the workers' time once the renders were released.
    """
    jobs: dict[str, list[float]] = defaultdict(list)
    busy: dict[str, float] = defaultdict(float)
    reads: dict[str, list[int]] = defaultdict(list)
    for path in sorted(logs.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                event = str(record.get("event", ""))
            except (json.JSONDecodeError, AttributeError):
                continue
            if (match := JOB_LINE.match(event)) is not None:
                variant = match["variant"]
                if match["kind"] == "sync":
                    name = "sync"
                elif variant in DERIVED:
                    name = f"derive {variant}"
                else:
                    name = f"download {variant}"
                seconds = float(match["s"])
                jobs[name].append(seconds)
                ended = datetime.fromisoformat(str(record["timestamp"])).timestamp()
                busy[name] += max(0.0, ended - max(ended - seconds, since))
            elif (match := DERIVE_LINE.match(event)) is not None:
                reads[f"{match['variant']} bytes read"].append(int(match["read"]))
                reads[f"{match['variant']} mp4 bytes"].append(int(match["size"]))
                reads[f"{match['variant']} ranged GETs"].append(int(match["gets"]))
    return {
        "jobs": dict(jobs),
        "busy_since": dict(busy),
        "derive_reads": {name: spread([float(v) for v in values]) for name, values in reads.items()},
    }
