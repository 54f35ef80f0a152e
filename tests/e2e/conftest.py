"""Real processes on loopback: SeaweedFS, the simulator (sending signed webhooks), the API and workers (the stack
itself: tests/support/stack.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app import migrate
from app.core.config import S3Settings
from tests.support import postgres
from tests.support.stack import LIVE_KINDS, Stack, running_stack


@pytest.fixture(scope="session")
def stack(seaweedfs_s3: S3Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The SDK tests' stack, on a database of its own: its worker must not take other tests' jobs."""
    name = postgres.create_database("vg_e2e")
    url = postgres.sqlalchemy_url(name)
    try:
        migrate.upgrade(url)
        s3 = seaweedfs_s3.model_copy(update={"prefix": "e2e-sdk", "part_size_bytes": 5 * 1024 * 1024})
        with running_stack(
            database_url=url, s3=s3, workdir=tmp_path_factory.mktemp("e2e"), gemini=True, live=tuple(LIVE_KINDS)
        ) as running:
            yield running
    finally:
        postgres.drop_database(name)


@pytest.fixture
def private_stack(seaweedfs_s3: S3Settings, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A stack of its own (own database, own S3 prefix, no worker unless asked): for crash tests."""
    names: list[str] = []

    @contextmanager
    def make(**overrides: Any) -> Iterator[Stack]:
        name = postgres.create_database("vg_e2e")
        names.append(name)
        url = postgres.sqlalchemy_url(name)
        migrate.upgrade(url)
        s3 = seaweedfs_s3.model_copy(
            update={"prefix": f"crash-{uuid.uuid4().hex[:8]}", "part_size_bytes": 5 * 1024 * 1024}
        )
        workers = overrides.pop("workers", 0)
        with running_stack(database_url=url, s3=s3, workdir=tmp_path, workers=workers, **overrides) as running:
            yield running

    yield make
    for name in names:
        postgres.drop_database(name)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path
