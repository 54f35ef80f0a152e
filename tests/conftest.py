"""Fixtures shared by every tier: a migrated throwaway database per run, and settings pointing at it.

Fixtures only: helpers live in `tests/support/` (settings in `tests/support/settings.py`, rows in
`tests/support/factories.py`); no module imports from a conftest (`tests/unit/test_test_layout.py`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from app import migrate
from app.core.config import S3Settings
from app.core.local_env import DISABLE_VARIABLE
from tests.support import postgres
from tests.support.seaweed import seaweedfs_s3
from tests.support.settings import MIB

__all__ = ["seaweedfs_s3"]

# A developer's own `make run` leaves .devstack/cli.env in the checkout; the suite's processes (CLI commands run
# from the repository root included) must never take settings from it. Inherited by every subprocess.
os.environ[DISABLE_VARIABLE] = "0"


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


@pytest.fixture
def s3_settings(seaweedfs_s3: S3Settings) -> S3Settings:
    """The run's bucket, a prefix of this test's own, and the smallest part S3 allows (keeps files small)."""
    return seaweedfs_s3.model_copy(update={"prefix": f"t-{secrets.token_hex(4)}", "part_size_bytes": 5 * MIB})
