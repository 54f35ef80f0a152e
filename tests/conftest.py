"""Fixtures shared by every tier: a migrated throwaway database per run, and settings pointing at it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from app import migrate
from app.core.config import (
    ApiSettings,
    DatabaseSettings,
    Mode,
    S3Settings,
    Settings,
    UpstreamSettings,
    WebhookSettings,
)
from app.core.local_env import DISABLE_VARIABLE
from tests.support import postgres
from tests.support.seaweed import seaweedfs_s3

__all__ = ["seaweedfs_s3"]

# A developer's own `make run` leaves .devstack/cli.env in the checkout; the suite's processes (CLI commands run
# from the repository root included) must never take settings from it. Inherited by every subprocess.
os.environ[DISABLE_VARIABLE] = "0"

# A `whsec_` secret for the tests' webhook receiver and simulator (24 random bytes, base64).
MIB = 1024 * 1024
TEST_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database created for this run, migrated to head, dropped at the end."""
    name = postgres.create_database()
    url = postgres.sqlalchemy_url(name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        postgres.drop_database(name)


def make_settings(database_url: str, *, upstream_base_url: str = "http://upstream.test/v1", **api: object) -> Settings:
    return Settings(
        mode=Mode.DEV,
        db=DatabaseSettings(url=database_url, pool_size=5),
        api=ApiSettings.model_validate({"refresh_min_interval_seconds": 0, **api}),
        upstream=UpstreamSettings(
            base_url=upstream_base_url,
            api_key="sim-key",  # type: ignore[arg-type]
            retry_base_seconds=0.01,
            retry_max_seconds=0.05,
        ),
        webhooks=WebhookSettings(secrets=TEST_WEBHOOK_SECRET),  # type: ignore[arg-type]
    )


@pytest.fixture
def s3_settings(seaweedfs_s3: S3Settings) -> S3Settings:
    """The run's bucket, a prefix of this test's own, and the smallest part S3 allows (keeps files small)."""
    return seaweedfs_s3.model_copy(update={"prefix": f"t-{secrets.token_hex(4)}", "part_size_bytes": 5 * MIB})
