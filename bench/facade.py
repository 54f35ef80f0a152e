"""Benchmark 4, facade overhead: what the gateway adds in front of upstream and of S3, and over the least an
authenticated retrieve does.

Retrieve and list through the gateway against the same calls on the simulator directly (the gateway
answers a finished video from Postgres, the simulator from memory) and against a bare endpoint that checks the
same bearer key and reads the same row(s) on raw asyncpg (`bench.auth_read_app`), one request at a time from
one keep-alive client, all three interleaved so noise hits them alike. Content: an archived asset streamed
through `GET /v1/videos/{id}/content` against the same object read straight from S3 through a presigned URL,
with the same client.

With `history_rows`, the database is then filled with that much history (`bench.history`) and the gateway's and
the bare endpoint's retrieve and list are timed again: reported beside the empty database's, with the change
in %.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from app.archive.storage import make_client
from bench.drive import create_videos, start_app, wait_for
from bench.history import change_percent, fill
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
    workdir: Path,
    *,
    requests: int,
    repeats: int,
    content_bytes: int,
    profile_dir: Path | None = None,
    history_rows: int = 0,
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
        **{name: [] for name in BARE_FIGURES},
    }
    result: dict[str, Any] = {}
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
        bare, bare_port = start_app(
            "bench.auth_read_app", name="auth-read", env={"BENCH_DSN": stack.dsn}, logs=workdir / "logs"
        )
        bare_url = f"http://127.0.0.1:{bare_port}"
        # One round: each call in turn, `requests` times (interleaved, so noise hits all alike).
        calls: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
            "gr": (f"{stack.api_url}/v1/videos/{video['id']}", ours, {}),
            "dr": (f"{stack.simulator_url}/v1/videos/{video['upstream_id']}", theirs, {}),
            "br": (f"{bare_url}/v1/videos/{video['id']}", ours, {}),
            "gl": (f"{stack.api_url}/v1/videos", ours, {"limit": LIST_VIDEOS}),
            "dl": (f"{stack.simulator_url}/v1/videos", theirs, {"limit": LIST_VIDEOS}),
            "bl": (f"{bare_url}/v1/videos", ours, {"limit": LIST_VIDEOS}),
        }
        try:
            with httpx.Client(timeout=120) as client:
                for _ in range(repeats):
                    p50 = _p50s(client, calls, requests)
                    samples["gateway_retrieve_p50_ms"].append(p50["gr"])
                    samples["direct_retrieve_p50_ms"].append(p50["dr"])
                    samples["gateway_list_p50_ms"].append(p50["gl"])
                    samples["direct_list_p50_ms"].append(p50["dl"])
                    samples["retrieve_added_ms"].append(p50["gr"] - p50["dr"])
                    samples["list_added_ms"].append(p50["gl"] - p50["dl"])
                    _bare_figures(samples, p50)
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
                if history_rows:
                    result["history"] = _with_history(
                        stack.dsn, client, calls, samples, history_rows, requests, repeats
                    )
        finally:
            bare.stop()
    return {
        "summary": {name: spread(values) for name, values in samples.items()},
        "samples": samples,
        "requests_per_repeat": requests,
        "content_bytes": content_bytes,
        "content_label": f"{content_bytes / MiB:g} MiB",
        **result,
    }


# The figures of the bare baseline (`bench.auth_read_app`) and the gateway's ratio to it, by (gateway, bare) call.
BARE_FIGURES = (
    "bare_retrieve_p50_ms",
    "bare_list_p50_ms",
    "retrieve_vs_bare",
    "list_vs_bare",
)


def _p50s(
    client: httpx.Client, calls: dict[str, tuple[str, dict[str, str], dict[str, Any]]], requests: int
) -> dict[str, float]:
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(requests):
        for name, (url, headers, params) in calls.items():
            timings[name].append(_timed_get(client, url, headers, **params))
    return {name: percentile(values, 50) for name, values in timings.items()}


def _bare_figures(samples: dict[str, list[float]], p50: dict[str, float]) -> None:
    samples["bare_retrieve_p50_ms"].append(p50["br"])
    samples["bare_list_p50_ms"].append(p50["bl"])
    samples["retrieve_vs_bare"].append(p50["gr"] / p50["br"])
    samples["list_vs_bare"].append(p50["gl"] / p50["bl"])


def _with_history(
    dsn: str,
    client: httpx.Client,
    calls: dict[str, tuple[str, dict[str, str], dict[str, Any]]],
    empty: dict[str, list[float]],
    history_rows: int,
    requests: int,
    repeats: int,
) -> dict[str, Any]:
    """Fill the database with `history_rows` rows of history, then time the gateway's and the bare app's
    retrieve and list again (the simulator and S3 read no table of ours: not again)."""
    filled = fill(dsn, history_rows)
    figures = ("gateway_retrieve_p50_ms", "gateway_list_p50_ms", *BARE_FIGURES)
    samples: dict[str, list[float]] = {name: [] for name in figures}
    ours = {name: call for name, call in calls.items() if name[0] in "gb"}
    for _ in range(repeats):
        p50 = _p50s(client, ours, requests)
        samples["gateway_retrieve_p50_ms"].append(p50["gr"])
        samples["gateway_list_p50_ms"].append(p50["gl"])
        _bare_figures(samples, p50)
    summary = {name: spread(values) for name, values in samples.items()}
    return {
        "rows": history_rows,
        "fill": filled,
        "summary": summary,
        "samples": samples,
        "change_percent": {
            name: change_percent(spread(empty[name])["median"], summary[name]["median"]) for name in figures
        },
    }
