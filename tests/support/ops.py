"""The operator commands' world, seen from a synchronous test: SQL by URL, a simulator on a real socket in a
thread of its own (`simulator_server` fixture; the commands build their own upstream client from the settings),
and an archive written to S3 as the worker leaves it."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.archive.storage import ArchiveStorage
from app.core.config import S3Settings
from app.models import Variant
from tests.support.factories import make_video
from tests.support.settings import SIMULATOR_KEY

# Just enough of each format for the archive's signature check, then padding.
SIGNATURES = {
    Variant.VIDEO: b"\x00\x00\x00\x18ftypmp42",
    Variant.THUMBNAIL: b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    Variant.SPRITESHEET: b"\xff\xd8\xff\xe0",
}


def make_video_sync(url: str, **fields: Any) -> str:
    """`tests.support.factories.make_video` for the synchronous CLI tests, on the database at `url`; the row's id.
    Unless given, upstream's download window closes in three minutes (what `status` shows as at risk)."""
    video = asyncio.run(make_video(url, **{"expires_at": datetime.now(UTC) + timedelta(minutes=3), **fields}))
    return video.id


def sql(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; the rows of the last one."""

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        rows: list[Any] = []
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(text(statement))
                rows = list(result.all()) if result.returns_rows else []
        await engine.dispose()
        return rows

    return asyncio.run(run())


@dataclass(frozen=True)
class ThreadedSimulator:
    base_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"authorization": f"Bearer {SIMULATOR_KEY}"}, timeout=10)

    def completed_video(self) -> str:
        """A video rendered upstream; returns its upstream id."""
        with self.client() as client:
            created = client.post("/v1/videos", json={"prompt": "ops", "model": "sora-2", "seconds": "4"})
            assert created.status_code == 200, created.text
            upstream_id: str = created.json()["id"]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if client.get(f"/v1/videos/{upstream_id}").json()["status"] == "completed":
                    return upstream_id
                time.sleep(0.05)
        raise AssertionError("upstream did not finish")

    def expire(self, upstream_id: str) -> None:
        with self.client() as client:
            assert client.post(f"/_sim/videos/{upstream_id}/expire").status_code == 200


def seed_archived(url: str, s3: S3Settings, video_id: str, *, size: int = 4096) -> dict[Variant, bytes]:
    """Every variant of the video written to S3 and recorded `archived`, as the worker leaves them."""

    async def upload() -> dict[Variant, tuple[str, bytes]]:
        storage = ArchiveStorage(s3)
        stored = {}
        try:
            await storage.ensure_bucket()
            for variant, signature in SIGNATURES.items():
                body = signature + secrets.token_bytes(size - len(signature))

                async def chunks(data: bytes = body) -> AsyncIterator[bytes]:
                    yield data

                written = await storage.upload_stream(
                    key=storage.key_for(video_id, variant), variant=variant, chunks=chunks(), expected_bytes=len(body)
                )
                stored[variant] = (written.key, body)
        finally:
            storage.close()
        return stored

    stored = asyncio.run(upload())
    sql(
        url,
        *(
            "INSERT INTO assets (id, video_id, variant, state, s3_key, content_type, bytes, sha256)"
            f" VALUES ('{uuid.uuid4()}', '{video_id}', '{variant.value}', 'archived', '{key}',"
            f" '{variant.content_type}', {len(body)}, '{hashlib.sha256(body).hexdigest()}')"
            for variant, (key, body) in stored.items()
        ),
    )
    return {variant: body for variant, (_, body) in stored.items()}
