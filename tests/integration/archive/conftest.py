"""Archive storage tests: a private SeaweedFS for the run, a key prefix and a raw S3 client per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from app.archive.storage import ArchiveStorage, make_client
from app.core.config import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


@pytest.fixture
def s3_client(s3_settings: S3Settings) -> Iterator[S3Client]:
    """A client of the test's own: for inspecting the bucket, and for spying on what storage sends."""
    client = make_client(s3_settings)
    yield client
    client.close()


@pytest.fixture
def storage(s3_settings: S3Settings, s3_client: S3Client) -> Iterator[ArchiveStorage]:
    archive = ArchiveStorage(s3_settings, client=s3_client)
    yield archive
    archive.close()
