"""Fixtures shared by every tier: a migrated throwaway database per run, and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import migrate
from app.core.config import ApiSettings, DatabaseSettings, Mode, Settings, UpstreamSettings
from tests.support import postgres


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
    )
