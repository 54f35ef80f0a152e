"""Real processes on loopback: the simulator and the API as subprocesses, driven over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.auth import service as auth_service
from app.core.config import DatabaseSettings
from app.core.db import Database
from app.dev.processes import ManagedProcess, free_port, gateway_command

SIMULATOR_KEY = "sim-key"


@dataclass(frozen=True)
class Stack:
    api_url: str
    simulator_url: str
    new_caller_key: Callable[[], str]


@pytest.fixture(scope="session")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    simulator_port, api_port = free_port(), free_port()
    simulator = ManagedProcess(
        "simulator",
        gateway_command("simulator", "--port", str(simulator_port)),
        {
            "VG_MODE": "dev",
            "VG_SIMULATOR__API_KEY": SIMULATOR_KEY,
            "VG_SIMULATOR__QUEUE_SECONDS": "0.2",
            "VG_SIMULATOR__RENDER_SECONDS": "1.0",
            "VG_SIMULATOR__FPS": "4",
            "VG_SIMULATOR__DATA_DIR": str(tmp_path_factory.mktemp("sim-data")),
        },
        logs / "simulator.log",
    ).start()
    api = ManagedProcess(
        "api",
        gateway_command("serve", "--port", str(api_port)),
        {
            "VG_MODE": "dev",
            "VG_DB__URL": database_url,
            "VG_UPSTREAM__BASE_URL": f"http://127.0.0.1:{simulator_port}/v1",
            "VG_UPSTREAM__API_KEY": SIMULATOR_KEY,
            "VG_API__REFRESH_MIN_INTERVAL_SECONDS": "0.2",
        },
        logs / "api.log",
    ).start()
    try:
        simulator.wait_http(f"http://127.0.0.1:{simulator_port}/v1/videos")
        api.wait_http(f"http://127.0.0.1:{api_port}/healthz")

        def new_caller_key() -> str:
            async def create() -> str:
                database = Database.connect(DatabaseSettings(url=database_url))  # type: ignore[arg-type]
                try:
                    async with database.sessionmaker.begin() as session:
                        issued = await auth_service.create_caller(session, name=f"e2e-{uuid.uuid4().hex[:10]}")
                        return issued.key
                finally:
                    await database.dispose()

            return asyncio.run(create())

        yield Stack(
            api_url=f"http://127.0.0.1:{api_port}",
            simulator_url=f"http://127.0.0.1:{simulator_port}",
            new_caller_key=new_caller_key,
        )
    finally:
        api.stop()
        simulator.stop()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path
