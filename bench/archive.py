"""Benchmark 1, archive throughput and memory: one big synthetic asset, from its webhook to archived in S3.

For each size, each repeat starts a fresh worker (so its `VmHWM` is this size's peak alone), creates one
render through the gateway whose MP4 is a synthetic asset of that size, and times from the simulator's first
webhook attempt to the moment the video asset's row says `archived` (both on this machine's clock). The
baseline, in the same repeat, is the shortest honest pipe (`bench.pipe`) streaming the same upstream URL
into the same bucket with the same part size and parts in flight.

Memory: the worker's peak RSS per size (100 MiB, 1 GiB and 4 GiB in the full run) should not grow with the
size, since the asset is streamed; `rss_flat` says whether the medians of all sizes are within 5 % of the
smallest of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.drive import content_url, create_videos, first_attempts, run_pipe, wait_for
from bench.stack import BenchStack, MiB, full_stack, rows, vm_hwm_mib
from bench.stats import spread

# Time a fresh worker needs to import and start claiming before the render completes (2 busy cores).
WORKER_WARMUP_SECONDS = 3.0
# Peak RSS is "flat" when the largest size's median is within this share of the smallest one's.
RSS_FLAT_WITHIN = 0.05


def run(
    workdir: Path,
    *,
    sizes: list[int],
    repeats: int,
    profile_dir: Path | None = None,
    warmup_seconds: float = WORKER_WARMUP_SECONDS,
) -> dict[str, Any]:
    results: dict[str, Any] = {"sizes": {}}
    with full_stack(workdir) as stack:
        key = stack.new_caller_key()
        _warm_up(stack, key, workdir)
        for size in sizes:
            samples: dict[str, list[float]] = {"gateway_mb_s": [], "pipe_mb_s": [], "ratio": [], "worker_rss_mib": []}
            raw: list[dict[str, Any]] = []
            for repeat in range(repeats):
                worker = stack.start_worker()
                time.sleep(warmup_seconds)
                stack.sim_faults(synthetic_asset_bytes=size)
                (video,) = create_videos(stack, [key], 1, prompt=f"archive {size}")
                profiler = None
                if profile_dir is not None and repeat == 0 and size == max(sizes):
                    from bench.profile import start_py_spy

                    profiler = start_py_spy(worker.pid, profile_dir / f"archive-worker-{size // MiB}MiB.txt")
                asyncio.run(
                    wait_for(
                        stack.dsn,
                        "SELECT state FROM assets WHERE video_id = $1 AND variant = 'video'",
                        lambda state: state in ("archived", "failed", "expired"),
                        video.id,
                        within=600,
                    )
                )
                if profiler is not None:
                    profiler.stop()
                peak = vm_hwm_mib(worker.pid)
                stack.stop_worker(worker)
                (record,) = rows(
                    stack.dsn,
                    "SELECT v.upstream_id, a.state, a.bytes, extract(epoch FROM a.updated_at)::float AS done "
                    "FROM assets a JOIN videos v ON v.id = a.video_id WHERE a.video_id = $1 AND a.variant = 'video'",
                    video.id,
                )
                if record["state"] != "archived" or record["bytes"] != size:
                    raise RuntimeError(f"archive of {size} bytes ended {record['state']} ({record['bytes']} bytes)")
                webhook_at = first_attempts(stack.deliveries())[record["upstream_id"]]
                seconds = record["done"] - webhook_at
                pipe = run_pipe(stack, [content_url(stack, record["upstream_id"])], workdir=workdir)
                gateway_rate = size / seconds / 1e6
                samples["gateway_mb_s"].append(gateway_rate)
                samples["pipe_mb_s"].append(pipe["mb_per_s"])
                samples["ratio"].append(gateway_rate / pipe["mb_per_s"])
                samples["worker_rss_mib"].append(peak)
                raw.append({"gateway_seconds": seconds, "worker_peak_rss_mib": peak, "pipe": pipe})
            results["sizes"][str(size)] = {
                "bytes": size,
                "label": _label(size),
                "summary": {name: spread(values) for name, values in samples.items()},
                "samples": samples,
                "raw": raw,
            }
        stack.sim_faults(synthetic_asset_bytes=None)
    results["rss_flat"] = rss_flat(results["sizes"].values())
    return results


def rss_flat(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Whether the worker's peak RSS stays flat across the sizes: the spread of the per-size medians, as a share
    of the smallest median (0.03 = the largest is 3 % above the smallest)."""
    medians = {entry["label"]: entry["summary"]["worker_rss_mib"]["median"] for entry in entries}
    growth = max(medians.values()) / min(medians.values()) - 1
    return {"medians_mib": medians, "growth": growth, "within": RSS_FLAT_WITHIN, "flat": growth <= RSS_FLAT_WITHIN}


def _warm_up(stack: BenchStack, key: str, workdir: Path) -> None:
    """One untimed round through worker and pipe: the first upload to a fresh SeaweedFS creates its volumes
    and is several times slower (as measured on an idle VM of this kind)."""
    worker = stack.start_worker()
    stack.sim_faults(synthetic_asset_bytes=16 * MiB)
    (video,) = create_videos(stack, [key], 1, prompt="warm-up")
    asyncio.run(
        wait_for(
            stack.dsn,
            "SELECT count(*) FROM assets WHERE video_id = $1 AND state = 'archived'",
            lambda count: count == 3,
            video.id,
            within=300,
        )
    )
    stack.stop_worker(worker)
    (record,) = rows(stack.dsn, "SELECT upstream_id FROM videos WHERE id = $1", video.id)
    run_pipe(stack, [content_url(stack, record["upstream_id"])], workdir=workdir)


def _label(size: int) -> str:
    return f"{size / 1024 / MiB:g} GiB" if size >= 1024 * MiB else f"{size / MiB:g} MiB"
