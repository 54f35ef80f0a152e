"""Driving a running stack: creating renders through the gateway, waiting on the database, running the pipe."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.dev.processes import ManagedProcess, free_port
from bench.stack import SIMULATOR_KEY, BenchStack


@dataclass(frozen=True)
class Created:
    id: str
    key: str


async def create_videos_async(
    api_url: str,
    keys: Sequence[str],
    count: int,
    *,
    concurrency: int = 16,
    prompt: str = "bench",
    callback_url: str | None = None,
    rate_per_second: float | None = None,
    model: str | None = None,
    size: str = "720x1280",
) -> list[Created]:
    """`count` renders created through the gateway, spread over `keys`; paced when `rate_per_second` is set.

    `model` picks the upstream profile the gateway routes to (unset: the default model, the default profile).
    """
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=api_url, timeout=120.0, limits=limits) as client:

        async def create(number: int) -> Created:
            if rate_per_second:
                await asyncio.sleep(max(0.0, started + number / rate_per_second - time.monotonic()))
            key = keys[number % len(keys)]
            body: dict[str, Any] = {"prompt": f"{prompt} #{number}", "seconds": "4", "size": size}
            if model:
                body["model"] = model
            if callback_url:
                body["callback_url"] = callback_url
            async with semaphore:
                for _ in range(20):
                    response = await client.post("/v1/videos", json=body, headers={"authorization": f"Bearer {key}"})
                    if response.status_code not in (429, 503):
                        break
                    await asyncio.sleep(0.5)
            if response.status_code != 200:
                raise RuntimeError(f"create #{number}: {response.status_code} {response.text[:300]}")
            return Created(id=response.json()["id"], key=key)

        return list(await asyncio.gather(*(create(number) for number in range(count))))


def create_videos(stack: BenchStack, keys: Sequence[str], count: int, **options: Any) -> list[Created]:
    return asyncio.run(create_videos_async(stack.api_url, keys, count, **options))


async def wait_for(dsn: str, sql: str, predicate: Any, *args: Any, within: float, interval: float = 0.1) -> Any:
    """Poll `sql` (one value, `$n` parameters from `args`) until `predicate(value)`; returns the value or
    raises TimeoutError after `within` seconds."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within
        while True:
            value = await connection.fetchval(sql, *args)
            if predicate(value):
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sql!r} still {value!r} after {within}s")
            await asyncio.sleep(interval)
    finally:
        await connection.close()


def content_url(stack: BenchStack, upstream_id: str, variant: str = "video") -> str:
    return f"{stack.simulator_url}/v1/videos/{upstream_id}/content?variant={variant}"


def run_pipe(
    stack: BenchStack,
    urls: Sequence[str],
    *,
    workdir: Path,
    threads: int = 1,
    processes: int = 1,
    headers: Mapping[str, str] | None = None,
    follow_redirects: bool = False,
) -> dict[str, Any]:
    """The shortest honest pipe over `urls`, in `processes` processes of `threads` uploads each.

    The OpenAI simulator's key goes as a bearer token, unless `headers` are given (the Gemini simulator wants
    `x-goog-api-key`); `follow_redirects` follows its download's 302 to the file host, as the gateway does.
    Returns total bytes, wall seconds (all processes), MB/s, and the largest peak RSS of the processes.
    """
    auth = (
        [option for name, value in headers.items() for option in ("--header", f"{name}: {value}")]
        if headers is not None
        else ["--bearer", SIMULATOR_KEY]
    )
    s3 = stack.s3
    part_size = int(stack.env.get("VG_S3__PART_SIZE_BYTES", s3.part_size_bytes))
    in_flight = int(stack.env.get("VG_S3__MAX_PARTS_IN_FLIGHT", s3.max_parts_in_flight))
    workdir.mkdir(parents=True, exist_ok=True)
    commands = []
    for index in range(processes):
        share = list(urls[index::processes])
        urls_file = workdir / f"pipe-urls-{index}.txt"
        urls_file.write_text("\n".join(share) + "\n")
        commands.append(
            [
                sys.executable,
                "-m",
                "bench.pipe",
                "--endpoint",
                s3.endpoint_url or "",
                "--bucket",
                s3.bucket,
                "--access-key",
                s3.access_key_id.get_secret_value(),
                "--secret-key",
                s3.secret_access_key.get_secret_value(),
                "--part-size",
                str(part_size),
                "--concurrency",
                str(in_flight),
                "--threads",
                str(threads),
                *auth,
                *(["--follow-redirects"] if follow_redirects else []),
                "--urls-file",
                str(urls_file),
            ]
        )
    started = time.perf_counter()
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for command in commands]
    outputs = []
    try:
        for child in children:
            out, _ = child.communicate(timeout=1800)
            if child.returncode != 0:
                raise RuntimeError(f"pipe failed ({child.returncode})")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    seconds = time.perf_counter() - started
    total = sum(int(output["bytes"]) for output in outputs)
    return {
        "bytes": total,
        "seconds": seconds if processes > 1 else float(outputs[0]["seconds"]),
        "mb_per_s": total / (seconds if processes > 1 else float(outputs[0]["seconds"])) / 1e6,
        "peak_rss_mib": max(float(output["peak_rss_mib"]) for output in outputs),
    }


def first_attempts(deliveries: Sequence[dict[str, Any]], *, key: str = "video_id") -> dict[str, float]:
    """Upstream video id → when its first webhook attempt started (the simulator's clock, epoch seconds).

    `key` is the delivery's field naming the video: `video_id` for the OpenAI simulator, `operation_name` (the
    gateway's upstream id of a Veo render) for the Gemini simulator, whose events name no video.
    """
    first: dict[str, float] = {}
    for delivery in deliveries:
        for attempt in delivery["attempts"]:
            video = delivery[key]
            first[video] = min(first.get(video, attempt["at"]), attempt["at"])
    return first


def start_app(module: str, *, name: str, env: Mapping[str, str], logs: Path) -> tuple[ManagedProcess, int]:
    """A bare baseline app (`module:app`) under uvicorn on a free port, with uvicorn's defaults as the gateway has
    them (loop and HTTP parser chosen by uvicorn) and no access log; returns the process and its port once the
    app answers (any status below 500: these apps have no page at `/`)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port)]
    process = ManagedProcess(
        f"{name}-baseline",
        [*command, "--no-access-log", "--log-level", "warning"],
        dict(env),
        logs / f"{name}-baseline.log",
    ).start()
    try:
        process.wait_http(f"http://127.0.0.1:{port}/", timeout=60)
    except BaseException:
        process.stop()
        raise
    return process, port
