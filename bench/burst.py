"""Benchmark 3, burst to archive: many videos complete within a few seconds, two workers archive them.

The renders are created through the gateway and held in progress by the simulator until their files are
drawn, then released together: `POST /_sim/finish-renders` makes them complete evenly spread over the burst
window (10 s), each sending its signed `video.completed` webhook. Timed from the release to the last asset
archived; per video, from its first webhook attempt to its last asset archived. A missed deadline is an
asset that ended `expired`/`failed` or landed after the video's `expires_at`.

Baseline, same run: the shortest honest pipe moving the same assets (same upstream URLs, same bytes) with
the same parallelism (two processes, each as many uploads at once as a worker runs jobs).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.drive import content_url, create_videos, first_attempts, run_pipe, wait_for
from bench.stack import MiB, full_stack, rows
from bench.stats import percentile, spread

WORKERS = 2
WORKER_CONCURRENCY = 4
VARIANTS = ("video", "thumbnail", "spritesheet")


def run(
    workdir: Path, *, videos: int, repeats: int, window_seconds: float, asset_bytes: int = 2 * MiB
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        "gateway_seconds": [],
        "pipe_seconds": [],
        "ratio": [],
        "p50_latency_s": [],
        "p99_latency_s": [],
        "missed_deadlines": [],
        "after_last_webhook_s": [],
    }
    raw: list[dict[str, Any]] = []
    env = {"VG_WORKER__CONCURRENCY": str(WORKER_CONCURRENCY), "VG_SIMULATOR__SYNTHETIC_ASSET_BYTES": str(asset_bytes)}
    for repeat in range(repeats):
        # A fresh stack per repeat: the previous burst's rows and objects would otherwise weigh on this one.
        with full_stack(workdir / f"burst-{repeat}", workers=WORKERS, env=env) as stack:
            stack.sim_config(queue_seconds=0, render_seconds=3600)
            keys = [stack.new_caller_key() for _ in range(4)]
            create_videos(stack, keys, videos, concurrency=16, prompt="burst")
            _wait_renders_drawn(stack, videos)
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
            pipe = run_pipe(stack, urls, workdir=workdir, threads=WORKER_CONCURRENCY, processes=WORKERS)
        samples["gateway_seconds"].append(gateway_seconds)
        samples["pipe_seconds"].append(pipe["seconds"])
        samples["ratio"].append(gateway_seconds / pipe["seconds"])
        samples["p50_latency_s"].append(percentile(latencies, 50))
        samples["p99_latency_s"].append(percentile(latencies, 99))
        samples["missed_deadlines"].append(float(missed))
        # The release window is a floor for the gateway's time (the last video completes at its end).
        samples["after_last_webhook_s"].append(max(last_asset.values()) - max(webhook_at.values()))
        raw.append(
            {
                "videos": videos,
                "assets": len(assets),
                "bytes": pipe["bytes"],
                "gateway_seconds": gateway_seconds,
                "webhooks_seen": len(latencies),
                "pipe": pipe,
            }
        )
    return {
        "summary": {name: spread(values) for name, values in samples.items()},
        "samples": samples,
        "raw": raw,
        "videos": videos,
        "window_seconds": window_seconds,
        "asset_bytes": asset_bytes,
        "workers": WORKERS,
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
