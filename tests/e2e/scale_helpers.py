"""Helpers of the archive-at-scale tests: bulk creates through the gateway, database snapshots, and
independent checks of what the simulator served and what S3 holds (hashes computed here, not read back
from the gateway's own bookkeeping)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from app.archive.storage import ArchiveStorage, make_client
from app.core.config import S3Settings
from tests.support.settings import SIMULATOR_KEY
from tests.support.stack import Stack

VARIANTS = ("video", "thumbnail", "spritesheet")
# Bodies of both the simulator and S3 are read in pieces of this size while hashing.
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class CreatedVideo:
    id: str
    caller_key: str


@dataclass(frozen=True)
class Digest:
    bytes: int
    sha256: str


def pg_dsn(stack: Stack) -> str:
    """asyncpg's form of the stack's SQLAlchemy URL."""
    return stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def query(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(pg_dsn(stack))
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def rows(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(query(stack, sql, *args))


# ----- creating ---------------------------------------------------------------------------------------


async def _create_all(
    api_url: str, keys: list[str], count: int, *, concurrency: int, size: str, prompt: str
) -> list[CreatedVideo]:
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, timeout=60.0, limits=limits) as client:

        async def create(number: int) -> CreatedVideo:
            key = keys[number % len(keys)]
            async with semaphore:
                response = await client.post(
                    "/v1/videos",
                    json={"prompt": f"{prompt} #{number}", "seconds": "4", "size": size},
                    headers={"authorization": f"Bearer {key}"},
                )
            assert response.status_code == 200, f"create #{number}: {response.status_code} {response.text}"
            body = response.json()
            assert body["status"] in ("queued", "in_progress"), body
            return CreatedVideo(id=body["id"], caller_key=key)

        return list(await asyncio.gather(*(create(number) for number in range(count))))


def create_videos(
    stack: Stack,
    count: int,
    *,
    callers: int = 4,
    concurrency: int = 16,
    size: str = "1280x720",
    prompt: str = "archive at scale",
) -> list[CreatedVideo]:
    """`count` videos created through the gateway's `/v1/videos`, spread over `callers` API keys, at once."""
    keys = [stack.new_caller_key() for _ in range(callers)]
    return asyncio.run(_create_all(stack.api_url, keys, count, concurrency=concurrency, size=size, prompt=prompt))


# ----- waiting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    videos: Counter[str]
    assets: Counter[str]
    jobs: Counter[str]
    webhooks: Counter[str]

    def describe(self) -> str:
        return f"videos {dict(self.videos)}, assets {dict(self.assets)}, jobs {dict(self.jobs)}, " + (
            f"webhook_events {dict(self.webhooks)}"
        )


async def _progress(connection: asyncpg.Connection) -> Progress:
    async def counts(sql: str) -> Counter[str]:
        return Counter({record[0]: record[1] for record in await connection.fetch(sql)})

    return Progress(
        videos=await counts("SELECT status, count(*) FROM videos GROUP BY status"),
        assets=await counts("SELECT state, count(*) FROM assets GROUP BY state"),
        jobs=await counts("SELECT kind || ':' || state, count(*) FROM archive_jobs GROUP BY 1"),
        webhooks=await counts("SELECT outcome, count(*) FROM webhook_events GROUP BY outcome"),
    )


async def _wait_archived(stack: Stack, expected_assets: int, timeout: float, *, orphans_are_fatal: bool) -> float:
    connection = await asyncpg.connect(pg_dsn(stack))
    try:
        deadline = time.monotonic() + timeout
        while True:
            progress = await _progress(connection)
            if progress.assets["archived"] == expected_assets:
                return time.monotonic()
            lost = {state: progress.assets[state] for state in ("failed", "expired") if progress.assets[state]}
            if lost or progress.videos["failed"]:
                errors = await connection.fetch(
                    "SELECT video_id, variant, state, error FROM assets WHERE state IN ('failed', 'expired') LIMIT 5"
                )
                raise AssertionError(f"assets lost: {lost}; {progress.describe()}; e.g. {[dict(e) for e in errors]}")
            if orphans_are_fatal and progress.webhooks["orphan"]:
                raise AssertionError(
                    f"a webhook beat the create's commit and was recorded as an orphan; with the reconciler off "
                    f"nothing would pick its video up: {progress.describe()}"
                )
            if time.monotonic() > deadline:
                job_errors = await connection.fetch(
                    "SELECT kind, state, attempts, last_error FROM archive_jobs WHERE last_error IS NOT NULL LIMIT 5"
                )
                raise AssertionError(
                    f"not all {expected_assets} assets archived within {timeout}s: {progress.describe()}; "
                    f"job errors e.g. {[dict(error) for error in job_errors]}"
                )
            await asyncio.sleep(0.25)
    finally:
        await connection.close()


def wait_until_archived(
    stack: Stack, expected_assets: int, *, timeout: float, orphans_are_fatal: bool = False
) -> float:
    """Poll the database (never the gateway's retrieve, which would refresh from upstream and queue downloads
    itself) until `expected_assets` asset rows are archived; fail early on a lost asset. Returns
    `time.monotonic()` at that moment."""
    return asyncio.run(_wait_archived(stack, expected_assets, timeout, orphans_are_fatal=orphans_are_fatal))


# ----- independent digests ------------------------------------------------------------------------------


async def _simulator_digests(
    stack: Stack, assets: Iterable[tuple[str, str]], concurrency: int
) -> dict[tuple[str, str], Digest]:
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"authorization": f"Bearer {SIMULATOR_KEY}"}
    async with httpx.AsyncClient(base_url=stack.simulator_url, headers=headers, timeout=60.0) as client:

        async def digest(upstream_id: str, variant: str) -> tuple[tuple[str, str], Digest]:
            hasher = hashlib.sha256()
            size = 0
            async with (
                semaphore,
                client.stream("GET", f"/v1/videos/{upstream_id}/content", params={"variant": variant}) as response,
            ):
                assert response.status_code == 200, f"{upstream_id} {variant}: {response.status_code}"
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    hasher.update(chunk)
                    size += len(chunk)
            return (upstream_id, variant), Digest(size, hasher.hexdigest())

        return dict(await asyncio.gather(*(digest(upstream_id, variant) for upstream_id, variant in assets)))


def simulator_digests(
    stack: Stack, assets: Iterable[tuple[str, str]], *, concurrency: int = 16
) -> dict[tuple[str, str], Digest]:
    """Size and SHA-256 of what the simulator serves for each `(upstream_id, variant)`, hashed here."""
    return asyncio.run(_simulator_digests(stack, assets, concurrency))


@dataclass(frozen=True)
class S3Copy:
    downloaded: Digest  # hashed here from the object's bytes
    recorded_sha256: str  # what the object says about itself (metadata, or the tag after a multipart upload)
    recorded_bytes: int


async def _s3_copies(settings: S3Settings, keys: Iterable[str], concurrency: int) -> dict[str, S3Copy]:
    storage = ArchiveStorage(settings)
    semaphore = asyncio.Semaphore(concurrency)

    async def copy(key: str) -> tuple[str, S3Copy]:
        async with semaphore:
            head = await storage.head(key)
            assert head is not None, f"no S3 object at {key}"
            hasher = hashlib.sha256()
            size = 0
            async with await storage.open_object(key) as stream:
                async for chunk in stream.iter_chunks(CHUNK_BYTES):
                    hasher.update(chunk)
                    size += len(chunk)
        return key, S3Copy(Digest(size, hasher.hexdigest()), head.sha256, head.bytes)

    try:
        return dict(await asyncio.gather(*(copy(key) for key in keys)))
    finally:
        storage.close()


def s3_copies(settings: S3Settings, keys: Iterable[str], *, concurrency: int = 8) -> dict[str, S3Copy]:
    """Each object downloaded and hashed here, with the SHA-256 it carries in its metadata or tag."""
    return asyncio.run(_s3_copies(settings, keys, concurrency))


def s3_listing(settings: S3Settings) -> tuple[list[str], list[str]]:
    """Every key under the stack's prefix (with repeats, if S3 ever listed one twice), and every multipart
    upload still open under it."""
    client = make_client(settings)
    prefix = settings.prefix.strip("/") + "/"
    try:
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        uploads = client.list_multipart_uploads(Bucket=settings.bucket, Prefix=prefix).get("Uploads", [])
        return keys, [upload["Key"] for upload in uploads]
    finally:
        client.close()


# ----- the gateway's own view ---------------------------------------------------------------------------


async def _retrieve_all(api_url: str, videos: list[CreatedVideo], concurrency: int) -> dict[str, dict[str, Any]]:
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=api_url, timeout=30.0) as client:

        async def retrieve(video: CreatedVideo) -> tuple[str, dict[str, Any]]:
            async with semaphore:
                response = await client.get(
                    f"/v1/videos/{video.id}", headers={"authorization": f"Bearer {video.caller_key}"}
                )
            assert response.status_code == 200, f"retrieve {video.id}: {response.status_code} {response.text}"
            return video.id, response.json()

        return dict(await asyncio.gather(*(retrieve(video) for video in videos)))


def retrieve_all(stack: Stack, videos: list[CreatedVideo], *, concurrency: int = 16) -> dict[str, dict[str, Any]]:
    """`GET /v1/videos/{id}` for every video, with its owner's key."""
    return asyncio.run(_retrieve_all(stack.api_url, videos, concurrency))
