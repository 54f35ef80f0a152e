"""Polling, SQL and S3 helpers for end-to-end tests that drive real processes (crash tests above all).

Tests here are synchronous (the stack fixture runs its own event loops), so the SQL helpers open one short
asyncpg connection per call: slow for a hot loop, plenty for polling a few times a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import httpx

from app.archive.storage import make_client
from app.dev.processes import ManagedProcess
from tests.support.stack import Stack

T = TypeVar("T")
MIB = 1024 * 1024


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy, and return that; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(interval)


def wait_exit(process: ManagedProcess, *, timeout: float) -> int:
    """Wait for a process to end; its exit code (negative: the signal that killed it)."""
    assert process.process is not None
    return process.process.wait(timeout=timeout)


# ----- SQL ----------------------------------------------------------------------------------------


def sql(stack: Stack, query: str, *args: object) -> list[dict[str, Any]]:
    """Run one statement on the stack's database (its own connection, autocommit) and return the rows."""

    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return [dict(row) for row in await connection.fetch(query, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())


def download_jobs(stack: Stack, video_id: str, variant: str = "video") -> list[dict[str, Any]]:
    """Every download job of one asset, oldest first."""
    return sql(
        stack,
        "SELECT id, state, attempts, max_attempts, lease_token, lease_until, worker_id, last_error"
        " FROM archive_jobs WHERE kind = 'download' AND video_id = $1 AND variant = $2 ORDER BY id",
        video_id,
        variant,
    )


def jobs_of(stack: Stack, video_id: str) -> list[dict[str, Any]]:
    """Every job of a video (sync and downloads), oldest first."""
    return sql(
        stack,
        "SELECT id, kind, variant, state, attempts, worker_id, last_error FROM archive_jobs"
        " WHERE video_id = $1 ORDER BY id",
        video_id,
    )


def queued_jobs(stack: Stack, video_id: str) -> list[dict[str, Any]]:
    return [job for job in jobs_of(stack, video_id) if job["state"] == "queued"]


def asset_rows(stack: Stack, video_id: str, variant: str = "video") -> list[dict[str, Any]]:
    return sql(
        stack,
        "SELECT state, s3_key, bytes, sha256, error FROM assets WHERE video_id = $1 AND variant = $2",
        video_id,
        variant,
    )


def asset_state(stack: Stack, video_id: str, variant: str = "video") -> str | None:
    rows = asset_rows(stack, video_id, variant)
    return rows[0]["state"] if rows else None


def upstream_id(stack: Stack, video_id: str) -> str:
    [row] = sql(stack, "SELECT upstream_id FROM videos WHERE id = $1", video_id)
    return str(row["upstream_id"])


def running_on(stack: Stack, video_id: str, worker_pid: int, variant: str = "video") -> dict[str, Any] | None:
    """The asset's job if it is running under the worker process `worker_pid` (worker ids end in `:pid`)."""
    for job in download_jobs(stack, video_id, variant):
        if job["state"] == "running" and str(job["worker_id"]).endswith(f":{worker_pid}"):
            return job
    return None


def downloading_on(stack: Stack, video_id: str, worker_pid: int, variant: str = "video") -> dict[str, Any] | None:
    """Like `running_on`, and the asset row says the transfer has started."""
    job = running_on(stack, video_id, worker_pid, variant)
    return job if job is not None and asset_state(stack, video_id, variant) == "downloading" else None


def terminate_backends(stack: Stack) -> int:
    """Kill every other connection to the stack's database (the API's and the workers' pools)."""
    rows = sql(
        stack,
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return sum(1 for row in rows if row["killed"])


def cut_off_a_heartbeat(stack: Stack, job_id: int, *, timeout: float = 5.0) -> int:
    """Hold the job's row lock until the worker's heartbeat blocks on it, then terminate the worker's backends.

    The heartbeat's transaction is in flight when its connection dies (not idle in the pool, where a
    pre-ping would hide the loss). Returns how many backends were terminated.
    """

    async def run() -> int:
        connection = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            async with connection.transaction():
                await connection.execute("SELECT 1 FROM archive_jobs WHERE id = $1 FOR UPDATE", job_id)
                deadline = time.monotonic() + timeout
                while True:
                    # Activity is a per-transaction snapshot unless cleared.
                    await connection.execute("SELECT pg_stat_clear_snapshot()")
                    if await connection.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                    ):
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no heartbeat blocked on job {job_id} within {timeout}s")
                    await asyncio.sleep(0.05)
                return int(
                    await connection.fetchval(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
        finally:
            await connection.close()

    return asyncio.run(run())


# ----- the gateway and the simulator --------------------------------------------------------------


def set_faults(stack: Stack, **knobs: object) -> None:
    with stack.simulator() as simulator:
        simulator.patch("/_sim/faults", json=knobs).raise_for_status()


def create_video(stack: Stack, *, prompt: str, key: str | None = None) -> str:
    """A video created through the gateway (the simulator renders it and sends the webhook); returns its id."""
    headers = {"authorization": f"Bearer {key or stack.new_caller_key()}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=10) as client:
        response = client.post("/v1/videos", files={"prompt": (None, prompt)})
        response.raise_for_status()
        return str(response.json()["id"])


def retrieve_video(stack: Stack, video_id: str, *, key: str) -> dict[str, Any]:
    """`GET /v1/videos/{id}` through the gateway: the video with its `archive` state per variant."""
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=10) as client:
        response = client.get(f"/v1/videos/{video_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def upstream_content_digest(stack: Stack, upstream_video_id: str, variant: str = "video") -> tuple[str, int]:
    """(sha256, size) of what the simulator serves for the asset, hashed chunk by chunk."""
    digest = hashlib.sha256()
    size = 0
    with (
        stack.simulator() as simulator,
        simulator.stream(
            "GET", f"/v1/videos/{upstream_video_id}/content", params={"variant": variant}, timeout=60
        ) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw(MIB):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# ----- S3 -----------------------------------------------------------------------------------------


def open_uploads(stack: Stack) -> list[dict[str, Any]]:
    """Incomplete multipart uploads under the stack's prefix."""
    client = make_client(stack.s3)
    try:
        response = client.list_multipart_uploads(Bucket=stack.s3.bucket, Prefix=f"{stack.s3.prefix}/")
        return [dict(upload) for upload in response.get("Uploads", [])]
    finally:
        client.close()


def object_size(stack: Stack, key: str) -> int:
    client = make_client(stack.s3)
    try:
        return int(client.head_object(Bucket=stack.s3.bucket, Key=key)["ContentLength"])
    finally:
        client.close()


def object_digest(stack: Stack, key: str) -> tuple[str, int]:
    """(sha256, size) of the stored object, read back in full."""
    client = make_client(stack.s3)
    try:
        body = client.get_object(Bucket=stack.s3.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in iter(lambda: body.read(MIB), b""):
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return digest.hexdigest(), size
    finally:
        client.close()
