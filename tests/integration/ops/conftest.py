"""The operator commands' world: a throwaway migrated database, the session's SeaweedFS, and a simulator on a real
socket (a thread of its own), since the commands build their own upstream client from the settings (helpers:
tests/support/ops.py)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from pydantic import SecretStr

from app import migrate
from app.core.config import S3Settings, SimulatorSettings, get_settings
from app.simulator import create_simulator_app
from tests.support import postgres
from tests.support.ops import ThreadedSimulator
from tests.support.settings import SIMULATOR_KEY, TEST_WEBHOOK_SECRET


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


# ----- upstream ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator_server() -> Iterator[ThreadedSimulator]:
    # A short TTL: the downloads a replay queues close their window within minutes (what `status` shows).
    app = create_simulator_app(
        SimulatorSettings(
            api_key=SecretStr(SIMULATOR_KEY),
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
