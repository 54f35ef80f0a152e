"""Benchmark 4, facade overhead: what the gateway adds in front of upstream and of S3.

Retrieve and list through the gateway against the same calls on the simulator directly (the gateway
answers a finished video from Postgres, the simulator from memory), one request at a time from one
keep-alive client, gateway and direct calls interleaved so noise hits both alike. Content: an archived
asset streamed through `GET /v1/videos/{id}/content` against the same object read straight from S3
through a presigned URL, with the same client.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from app.archive.storage import make_client
from bench.drive import create_videos, wait_for
from bench.profile import start_py_spy
from bench.stack import SIMULATOR_KEY, MiB, full_stack, rows
from bench.stats import percentile, spread

LIST_VIDEOS = 20


def _timed_get(client: httpx.Client, url: str, headers: dict[str, str], **params: Any) -> float:
    started = time.perf_counter()
    response = client.get(url, headers=headers, params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def _stream_rate(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    size = 0
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return size / (time.perf_counter() - started) / 1e6


def run(
    workdir: Path, *, requests: int, repeats: int, content_bytes: int, profile_dir: Path | None = None
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        "retrieve_added_ms": [],
        "list_added_ms": [],
        "gateway_retrieve_p50_ms": [],
        "direct_retrieve_p50_ms": [],
        "gateway_list_p50_ms": [],
        "direct_list_p50_ms": [],
        "gateway_content_mb_s": [],
        "s3_content_mb_s": [],
        "content_ratio": [],
    }
    with full_stack(workdir, workers=1, env={"VG_SIMULATOR__SYNTHETIC_ASSET_BYTES": str(content_bytes)}) as stack:
        key = stack.new_caller_key()
        create_videos(stack, [key], LIST_VIDEOS, prompt="facade")
        asyncio.run(
            wait_for(
                stack.dsn,
                "SELECT count(*) FROM assets WHERE state = 'archived'",
                lambda count: count == 3 * LIST_VIDEOS,
                within=300,
            )
        )
        video = rows(stack.dsn, "SELECT id, upstream_id FROM videos ORDER BY created_at LIMIT 1")[0]
        (asset,) = rows(stack.dsn, "SELECT s3_key FROM assets WHERE video_id = $1 AND variant = 'video'", video["id"])
        s3 = make_client(stack.s3)
        presigned = s3.generate_presigned_url(
            "get_object", Params={"Bucket": stack.s3.bucket, "Key": asset["s3_key"]}, ExpiresIn=3600
        )
        s3.close()
        ours = {"authorization": f"Bearer {key}"}
        theirs = {"authorization": f"Bearer {SIMULATOR_KEY}"}
        with httpx.Client(timeout=120) as client:
            for _ in range(repeats):
                timings: dict[str, list[float]] = {name: [] for name in ("gr", "dr", "gl", "dl")}
                for _ in range(requests):
                    timings["gr"].append(_timed_get(client, f"{stack.api_url}/v1/videos/{video['id']}", ours))
                    timings["dr"].append(
                        _timed_get(client, f"{stack.simulator_url}/v1/videos/{video['upstream_id']}", theirs)
                    )
                    timings["gl"].append(_timed_get(client, f"{stack.api_url}/v1/videos", ours, limit=LIST_VIDEOS))
                    timings["dl"].append(
                        _timed_get(client, f"{stack.simulator_url}/v1/videos", theirs, limit=LIST_VIDEOS)
                    )
                p50 = {name: percentile(values, 50) for name, values in timings.items()}
                samples["gateway_retrieve_p50_ms"].append(p50["gr"])
                samples["direct_retrieve_p50_ms"].append(p50["dr"])
                samples["gateway_list_p50_ms"].append(p50["gl"])
                samples["direct_list_p50_ms"].append(p50["dl"])
                samples["retrieve_added_ms"].append(p50["gr"] - p50["dr"])
                samples["list_added_ms"].append(p50["gl"] - p50["dl"])
                gateway_rate = _stream_rate(client, f"{stack.api_url}/v1/videos/{video['id']}/content", ours)
                s3_rate = _stream_rate(client, presigned, {})
                samples["gateway_content_mb_s"].append(gateway_rate)
                samples["s3_content_mb_s"].append(s3_rate)
                samples["content_ratio"].append(gateway_rate / s3_rate)
            if profile_dir is not None:
                # Unmeasured: the API under py-spy while it answers retrieves and lists, then streams content.
                profiler = start_py_spy(stack.api.pid, profile_dir / "facade-api.txt", rate=200)
                for _ in range(requests):
                    _timed_get(client, f"{stack.api_url}/v1/videos/{video['id']}", ours)
                    _timed_get(client, f"{stack.api_url}/v1/videos", ours, limit=LIST_VIDEOS)
                profiler.stop()
                profiler = start_py_spy(stack.api.pid, profile_dir / "facade-content-api.txt", rate=200)
                _stream_rate(client, f"{stack.api_url}/v1/videos/{video['id']}/content", ours)
                profiler.stop()
    return {
        "summary": {name: spread(values) for name, values in samples.items()},
        "samples": samples,
        "requests_per_repeat": requests,
        "content_bytes": content_bytes,
        "content_label": f"{content_bytes / MiB:g} MiB",
    }
