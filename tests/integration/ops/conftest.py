"""The operator commands' world: a throwaway migrated database, the session's SeaweedFS, and a simulator on a real
socket (a thread of its own), since the commands build their own upstream client from the settings."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from app import migrate
from app.archive.storage import ArchiveStorage
from app.core.config import S3Settings, SimulatorSettings, get_settings
from app.models import Variant
from app.simulator import create_simulator_app
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.support import postgres

SIMULATOR_KEY = "sim-key"
# Just enough of each format for the archive's signature check, then padding.
SIGNATURES = {
    Variant.VIDEO: b"\x00\x00\x00\x18ftypmp42",
    Variant.THUMBNAIL: b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    Variant.SPRITESHEET: b"\xff\xd8\xff\xe0",
}


@pytest.fixture
def ops_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = postgres.create_database("vg_ops")
    url = postgres.sqlalchemy_url(name)
    migrate.upgrade(url)
    monkeypatch.setenv("VG_MODE", "dev")
    monkeypatch.setenv("VG_DB__URL", url)
    monkeypatch.setenv("VG_WEBHOOKS__SECRETS", TEST_WEBHOOK_SECRET)
    monkeypatch.setenv("COLUMNS", "250")  # tables wide enough to show whole ids
    get_settings.cache_clear()
    try:
        yield url
    finally:
        get_settings.cache_clear()
        postgres.drop_database(name)


def sql(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; the rows of the last one."""

    async def run() -> list[Any]:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        rows: list[Any] = []
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(text(statement))
                rows = list(result.all()) if result.returns_rows else []
        await engine.dispose()
        return rows

    return asyncio.run(run())


def seed_video(url: str, status: str = "completed", *, upstream_id: str | None = None) -> str:
    video_id = "video_" + uuid.uuid4().hex
    caller = uuid.uuid4()
    sql(
        url,
        f"INSERT INTO callers (id, name) VALUES ('{caller}', 'ops-{caller}')",
        "INSERT INTO videos (id, caller_id, upstream_id, model, size, seconds, prompt, status, progress, expires_at)"
        f" VALUES ('{video_id}', '{caller}', '{upstream_id or 'up_' + video_id}', 'sora-2', '720x1280', '4', 'p',"
        f" '{status}', 100, now() + interval '3 minutes')",
    )
    return video_id


# ----- upstream ---------------------------------------------------------------------------------


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


@pytest.fixture(scope="module")
def simulator_server() -> Iterator[ThreadedSimulator]:
    # A short TTL: the downloads a replay queues close their window within minutes (what `status` shows).
    app = create_simulator_app(
        SimulatorSettings(
            api_key=SIMULATOR_KEY,  # type: ignore[arg-type]
            queue_seconds=0.0,
            render_seconds=0.2,
            fps=4,
            ttl_seconds=180,
        )
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", ws="none"))
    thread = threading.Thread(target=server.run, name="ops-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the simulator did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield ThreadedSimulator(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def upstream(
    simulator_server: ThreadedSimulator, ops_database: str, monkeypatch: pytest.MonkeyPatch
) -> ThreadedSimulator:
    """The commands' default upstream profile is the threaded simulator."""
    monkeypatch.setenv("VG_UPSTREAM__BASE_URL", f"{simulator_server.base_url}/v1")
    monkeypatch.setenv("VG_UPSTREAM__API_KEY", SIMULATOR_KEY)
    get_settings.cache_clear()
    return simulator_server


# ----- S3 ---------------------------------------------------------------------------------------


@pytest.fixture
def ops_s3(seaweedfs_s3: S3Settings, ops_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Settings]:
    """The commands' S3 is the session's SeaweedFS, under a prefix of this test's own."""
    settings = seaweedfs_s3.model_copy(update={"prefix": f"ops-{secrets.token_hex(4)}"})
    monkeypatch.setenv("VG_S3__ENDPOINT_URL", str(settings.endpoint_url))
    monkeypatch.setenv("VG_S3__BUCKET", settings.bucket)
    monkeypatch.setenv("VG_S3__ACCESS_KEY_ID", settings.access_key_id.get_secret_value())
    monkeypatch.setenv("VG_S3__SECRET_ACCESS_KEY", settings.secret_access_key.get_secret_value())
    monkeypatch.setenv("VG_S3__PREFIX", settings.prefix)
    get_settings.cache_clear()
    yield settings


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
