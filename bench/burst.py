"""Benchmark 3, burst to archive: many videos complete within a few seconds, two workers archive them (and,
for the scaling, one and four workers too).

The renders are created through the gateway and held in progress by the simulator until their files are
drawn, then released together: `POST /_sim/finish-renders` makes them complete evenly spread over the burst
window (10 s), each sending its signed `video.completed` webhook. Timed from the release to the last asset
archived; per video, from its first webhook attempt to its last asset archived. A missed deadline is an
asset that ended `expired`/`failed` or landed after the video's `expires_at`.

Baseline, same run: the shortest honest pipe moving the same assets (same upstream URLs, same bytes) with
the same parallelism (two processes, each as many uploads at once as a worker runs jobs).

Workers: the same burst with each of `worker_counts` worker processes (1, 2 and 4 in the full run), each
against the pipe with as many processes; the counts take turns within a repeat, each on a fresh stack. The
throughput is videos per second from the release to the last asset archived (the release window is a floor
of that time), and the scaling is each count's median throughput over one worker's. The top-level figures
(the goals') are those of two workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.drive import content_url, create_videos, first_attempts, run_pipe, wait_for
from bench.profile import start_py_spy
from bench.stack import MiB, full_stack, rows
from bench.stats import percentile, spread

WORKERS = 2
WORKER_CONCURRENCY = 4
VARIANTS = ("video", "thumbnail", "spritesheet")
# What a round keeps in `raw`, beside its figures' samples.
RAW_KEYS = ("videos", "workers", "assets", "bytes", "gateway_seconds", "webhooks_seen", "pipe")


def run(
    workdir: Path,
    *,
    videos: int,
    repeats: int,
    window_seconds: float,
    asset_bytes: int = 2 * MiB,
    worker_counts: Sequence[int] = (WORKERS,),
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    figures = (
        "gateway_seconds",
        "pipe_seconds",
        "ratio",
        "p50_latency_s",
        "p99_latency_s",
        "missed_deadlines",
        "after_last_webhook_s",
        "videos_per_s",
        "pipe_videos_per_s",
    )
    samples: dict[int, dict[str, list[float]]] = {n: {name: [] for name in figures} for n in worker_counts}
    raw: dict[int, list[dict[str, Any]]] = {n: [] for n in worker_counts}
    for repeat in range(repeats):
        for workers in worker_counts:
            # The profiled round: the main worker count's first (each of its workers, from the release on).
            profile = profile_dir if repeat == 0 and workers == WORKERS else None
            round_ = _round(
                workdir / f"burst-{workers}w-{repeat}", videos, window_seconds, asset_bytes, workers, profile
            )
            for name in figures:
                samples[workers][name].append(round_[name])
            raw[workers].append({key: round_[key] for key in RAW_KEYS})
    by_workers: dict[int, dict[str, Any]] = {
        n: {
            "workers": n,
            "summary": {k: spread(v) for k, v in samples[n].items()},
            "samples": samples[n],
            "raw": raw[n],
        }
        for n in worker_counts
    }
    main = WORKERS if WORKERS in worker_counts else worker_counts[-1]
    one = by_workers[min(worker_counts)]["summary"]["videos_per_s"]["median"]
    return {
        **{key: value for key, value in by_workers[main].items() if key != "workers"},
        "videos": videos,
        "window_seconds": window_seconds,
        "asset_bytes": asset_bytes,
        "workers": main,
        "worker_counts": list(worker_counts),
        "by_workers": {str(n): entry for n, entry in by_workers.items()},
        # Median throughput of each count over the smallest count's (1 worker in the full run).
        "scaling": {str(n): entry["summary"]["videos_per_s"]["median"] / one for n, entry in by_workers.items()},
    }


def _round(
    workdir: Path, videos: int, window_seconds: float, asset_bytes: int, workers: int, profile_dir: Path | None
) -> dict[str, Any]:
    """One burst on a fresh stack (the previous burst's rows and objects would otherwise weigh on this one)."""
    env = {"VG_WORKER__CONCURRENCY": str(WORKER_CONCURRENCY), "VG_SIMULATOR__SYNTHETIC_ASSET_BYTES": str(asset_bytes)}
    with full_stack(workdir, workers=workers, env=env) as stack:
        stack.sim_config(queue_seconds=0, render_seconds=3600)
        keys = [stack.new_caller_key() for _ in range(4)]
        create_videos(stack, keys, videos, concurrency=16, prompt="burst")
        _wait_renders_drawn(stack, videos)
        profilers = (
            [
                start_py_spy(worker.pid, profile_dir / f"burst-worker-{number}.txt")
                for number, worker in enumerate(stack.workers, start=1)
            ]
            if profile_dir is not None
            else []
        )
        with stack.sim() as sim:
            released_at = time.time()
            released = sim.post("/_sim/finish-renders", json={"over_seconds": window_seconds}).json()["released"]
        if released != videos:
            raise RuntimeError(f"released {released} of {videos} renders")
        asyncio.run(
            wait_for(
                stack.dsn,
                "SELECT count(*) FROM assets WHERE state IN ('archived', 'failed', 'expired')",
                lambda count: count >= 3 * videos,
                within=600,
                interval=0.2,
            )
        )
        for profiler in profilers:
            profiler.stop()
        assets = rows(
            stack.dsn,
            "SELECT v.upstream_id, a.variant, a.state, extract(epoch FROM a.updated_at)::float AS done, "
            "a.updated_at > v.expires_at AS late FROM assets a JOIN videos v ON v.id = a.video_id",
        )
        last_asset: dict[str, float] = {}
        for asset in assets:
            last_asset[asset["upstream_id"]] = max(last_asset.get(asset["upstream_id"], 0.0), asset["done"])
        webhook_at = first_attempts(stack.deliveries())
        latencies = [done - webhook_at[upstream] for upstream, done in last_asset.items() if upstream in webhook_at]
        missed = sum(1 for asset in assets if asset["state"] != "archived" or asset["late"])
        gateway_seconds = max(last_asset.values()) - released_at
        urls = [content_url(stack, upstream, variant) for upstream in last_asset for variant in VARIANTS]
        pipe = run_pipe(stack, urls, workdir=workdir, threads=WORKER_CONCURRENCY, processes=workers)
    return {
        "gateway_seconds": gateway_seconds,
        "pipe_seconds": pipe["seconds"],
        "ratio": gateway_seconds / pipe["seconds"],
        "p50_latency_s": percentile(latencies, 50),
        "p99_latency_s": percentile(latencies, 99),
        "missed_deadlines": float(missed),
        # The release window is a floor for the gateway's time (the last video completes at its end).
        "after_last_webhook_s": max(last_asset.values()) - max(webhook_at.values()),
        "videos_per_s": videos / gateway_seconds,
        "pipe_videos_per_s": videos / pipe["seconds"],
        "videos": videos,
        "workers": workers,
        "assets": len(assets),
        "bytes": pipe["bytes"],
        "webhooks_seen": len(latencies),
        "pipe": pipe,
    }


def _wait_renders_drawn(stack: Any, videos: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    with stack.sim() as sim:
        while True:
            stats = sim.get("/_sim/stats").json()
            in_progress = sim.get("/v1/videos", params={"limit": 1}).status_code == 200
            if stats["videos_created"] >= videos and stats["renders_pending"] == 0 and in_progress:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"renders still drawing: {stats}")
            time.sleep(0.5)
