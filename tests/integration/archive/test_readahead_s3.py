"""Reads of archived objects through the read-ahead (app/archive/readahead.py) against a real S3 server: whole
objects and ranges byte for byte whatever the window, botocore's checksum check still applied, and a download
dropped midway leaves its body closed and the client able to read again."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import pytest

from app.archive.storage import ArchiveStorage, ObjectStream
from app.core.config import S3Settings
from tests.support.settings import MIB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def noise(size: int, *, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_all(stream: ObjectStream, *, chunk_size: int, read_ahead: int) -> bytes:
    try:
        return b"".join([chunk async for chunk in stream.iter_chunks(chunk_size, read_ahead=read_ahead)])
    finally:
        await stream.aclose()


@pytest.mark.parametrize(("chunk_size", "read_ahead"), [(MIB, 1), (MIB, 4), (64 * 1024, 3)])
async def test_whole_objects_and_ranges_come_back_byte_for_byte(
    storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, chunk_size: int, read_ahead: int
) -> None:
    data = noise(6 * MIB + 123)
    key = f"{s3_settings.prefix}/video_ra/video.mp4"
    s3_client.put_object(Bucket=s3_settings.bucket, Key=key, Body=data, ContentType="video/mp4")

    whole = await storage.open_object(key)
    assert await read_all(whole, chunk_size=chunk_size, read_ahead=read_ahead) == data
    assert whole.content_length == len(data)

    first, last = 3 * MIB + 5, 5 * MIB - 1
    ranged = await storage.open_object(key, byte_range=(first, last))
    assert await read_all(ranged, chunk_size=chunk_size, read_ahead=read_ahead) == data[first : last + 1]
    assert ranged.content_range == f"bytes {first}-{last}/{len(data)}"


async def test_an_object_with_a_full_checksum_is_still_checked_by_botocore(
    storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
) -> None:
    """A single PUT with CRC32 comes back as botocore's checksum-validating body: read through the window, the
    check runs at the end as before (a mismatch would raise there)."""
    data = noise(3 * MIB + 7, seed=11)
    key = f"{s3_settings.prefix}/video_ra/thumbnail.webp"
    s3_client.put_object(Bucket=s3_settings.bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32")
    stream = await storage.open_object(key)
    assert type(stream._body).__name__ == "StreamingChecksumBody"
    assert await read_all(stream, chunk_size=MIB, read_ahead=2) == data


async def test_a_download_dropped_midway_closes_its_body_and_reads_go_on(
    storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
) -> None:
    data = noise(8 * MIB, seed=3)
    key = f"{s3_settings.prefix}/video_ra/video.mp4"
    s3_client.put_object(Bucket=s3_settings.bucket, Key=key, Body=data)

    for _ in range(3):  # more than once: a dropped connection must not poison the pool
        stream = await storage.open_object(key)
        chunks = stream.iter_chunks(MIB, read_ahead=2)
        assert await anext(chunks) == data[:MIB]
        await chunks.aclose()
        await stream.aclose()
        assert stream._reader is not None and stream._reader.closed
        assert not stream._reader.reading

    assert await storage.read_digest(key) == (len(data), hashlib.sha256(data).hexdigest())
