"""Thumbnail and spritesheet derived from an MP4 archived in a real S3 server (the run's private SeaweedFS).

The MP4 is read back with ranged GETs only: these tests count them, and measure what a large file costs in
bytes fetched and in traced memory (the bound is the reader's read-ahead window, not the file).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from app.archive.derive import derive_image, spritesheet_from, thumbnail_from
from app.archive.storage import RANGED_MAX_FETCH_BYTES, ArchiveStorage, ObjectNotFound, StorageError, StoredObject
from app.models.asset import Variant
from app.simulator import render
from app.simulator.render import RenderJob, render_assets
from tests.support.settings import MIB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

JOB = RenderJob(prompt="a ball crossing the archive", width=320, height=180, seconds=2, fps=12)
PADDING = 32 * MIB


@dataclass
class GetSpy:
    """Every GetObject the client sends, with its parameters (recorded before the request is built)."""

    gets: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "GetObject":
            self.gets.append(dict(params))


@pytest.fixture
def get_spy(s3_client: S3Client) -> Iterator[GetSpy]:
    spy = GetSpy()
    s3_client.meta.events.register("before-parameter-build.s3.GetObject", spy)
    yield spy
    s3_client.meta.events.unregister("before-parameter-build.s3.GetObject", spy)


@dataclass(frozen=True)
class Rendered:
    mp4: bytes
    spritesheet_size: tuple[int, int]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    directory: Path = tmp_path_factory.mktemp("render")
    render_assets(JOB, directory, lambda: False)
    with Image.open(directory / render.SPRITESHEET_FILE) as spritesheet:
        size = spritesheet.size
    return Rendered(mp4=(directory / render.VIDEO_FILE).read_bytes(), spritesheet_size=size)


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload(storage: ArchiveStorage, video_id: str, variant: Variant, data: bytes) -> StoredObject:
    return await storage.upload_stream(
        key=storage.key_for(video_id, variant), variant=variant, chunks=one_chunk(data), expected_bytes=len(data)
    )


async def read_back(storage: ArchiveStorage, key: str) -> bytes:
    async with await storage.open_object(key) as stream:
        return b"".join([chunk async for chunk in stream.iter_chunks()])


def padded_parts(mp4: bytes, padding: int) -> tuple[bytes, int, bytes]:
    """The MP4 split where a `free` box of `padding` bytes can go: before its trailing `moov`.

    Nothing points into the file past `mdat` (sample offsets point into `mdat`, which does not move), so the
    padded file is as valid an MP4 as the original; demuxers skip `free` boxes.
    """
    offset = 0
    while offset < len(mp4):
        size, kind = struct.unpack(">I4s", mp4[offset : offset + 8])
        if kind == b"moov":
            assert offset + size == len(mp4), "the rendered MP4 should end with its moov"
            return mp4[:offset], padding, mp4[offset:]
        offset += size
    raise AssertionError("no moov box")


async def padded_source(head: bytes, padding: int, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    yield struct.pack(">I4s", padding, b"free")
    zeros = bytes(MIB)
    remaining = padding - 8
    while remaining:
        yield zeros[: min(remaining, len(zeros))]
        remaining -= min(remaining, len(zeros))
        await asyncio.sleep(0)
    yield tail


class TestDeriveFromTheArchive:
    async def test_both_variants_are_derived_stored_and_read_back(
        self, storage: ArchiveStorage, rendered: Rendered, get_spy: GetSpy
    ) -> None:
        video = await upload(storage, "video_derive", Variant.VIDEO, rendered.mp4)

        thumbnail = await derive_image(storage, video_key=video.key, variant=Variant.THUMBNAIL)
        spritesheet = await derive_image(storage, video_key=video.key, variant=Variant.SPRITESHEET)

        # Derived from S3 exactly as from the bytes themselves.
        assert thumbnail == thumbnail_from(io.BytesIO(rendered.mp4))
        assert spritesheet == spritesheet_from(io.BytesIO(rendered.mp4))
        # Ranged GETs only, each pinned to the object that was opened.
        assert get_spy.gets
        assert all(get["Range"].startswith("bytes=") and get["IfMatch"] for get in get_spy.gets)
        print(f"{len(rendered.mp4)} B MP4: {len(get_spy.gets)} ranged GETs for both variants")  # noqa: T201

        for variant, image, fmt, size in [
            (Variant.THUMBNAIL, thumbnail, "WEBP", (JOB.width, JOB.height)),
            (Variant.SPRITESHEET, spritesheet, "JPEG", rendered.spritesheet_size),
        ]:
            # upload_stream checks the variant's magic bytes before writing anything.
            stored = await upload(storage, "video_derive", variant, image)
            assert stored.key == storage.key_for("video_derive", variant)
            assert (stored.bytes, stored.sha256) == (len(image), hashlib.sha256(image).hexdigest())
            assert stored.content_type == variant.content_type
            head = await storage.head(stored.key)
            assert head is not None and (head.bytes, head.sha256) == (len(image), stored.sha256)
            back = await read_back(storage, stored.key)
            assert back == image
            with Image.open(io.BytesIO(back)) as decoded:
                assert (decoded.format, decoded.size) == (fmt, size)

    async def test_a_missing_video_is_object_not_found(self, storage: ArchiveStorage) -> None:
        with pytest.raises(ObjectNotFound):
            await derive_image(
                storage, video_key=storage.key_for("video_absent", Variant.VIDEO), variant=Variant.THUMBNAIL
            )

    async def test_an_object_replaced_while_read_fails_instead_of_mixing_two_files(
        self, storage: ArchiveStorage, rendered: Rendered
    ) -> None:
        video = await upload(storage, "video_replaced", Variant.VIDEO, rendered.mp4)
        reader = await storage.open_seekable(video.key)
        other = rendered.mp4[:-1] + bytes([rendered.mp4[-1] ^ 1])  # another file under the same key
        await upload(storage, "video_replaced", Variant.VIDEO, other)

        with reader, pytest.raises(StorageError) as raised:
            await asyncio.to_thread(reader.read, 16)
        assert raised.value.status == 412  # If-Match: the server refused the new object's bytes


class TestLargeVideo:
    """A 32 MiB+ MP4 (a real one, padded before its moov): what is fetched and held stays near one window."""

    @pytest.fixture
    async def large(self, storage: ArchiveStorage, rendered: Rendered) -> StoredObject:
        head, padding, tail = padded_parts(rendered.mp4, PADDING)
        return await storage.upload_stream(
            key=storage.key_for("video_large", Variant.VIDEO),
            variant=Variant.VIDEO,
            chunks=padded_source(head, padding, tail),
            expected_bytes=len(head) + padding + len(tail),
        )

    async def test_derivation_fetches_and_holds_a_fraction_of_the_file(
        self, storage: ArchiveStorage, rendered: Rendered, large: StoredObject, get_spy: GetSpy
    ) -> None:
        results: dict[Variant, bytes] = {}
        for variant, derive in [(Variant.THUMBNAIL, thumbnail_from), (Variant.SPRITESHEET, spritesheet_from)]:
            get_spy.gets.clear()
            tracemalloc.start()
            try:
                reader = await storage.open_seekable(large.key)
                with reader:
                    results[variant] = await asyncio.to_thread(derive, reader)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()

            print(  # noqa: T201
                f"{variant.value} of a {large.bytes / MIB:.1f} MiB MP4: {reader.bytes_fetched / 1024:.0f} KiB fetched "
                f"in {reader.requests} ranged GETs, traced peak {peak / MIB:.2f} MiB"
            )
            assert reader.requests == len(get_spy.gets) >= 2  # the head, then the moov past the padding
            assert all("Range" in get for get in get_spy.gets)
            assert reader.bytes_fetched < 2 * RANGED_MAX_FETCH_BYTES < large.bytes / 8
            assert peak < 4 * RANGED_MAX_FETCH_BYTES < large.bytes / 4

        # The padding changed nothing the decoder sees.
        assert results[Variant.THUMBNAIL] == thumbnail_from(io.BytesIO(rendered.mp4))
        assert results[Variant.SPRITESHEET] == spritesheet_from(io.BytesIO(rendered.mp4))

    async def test_reading_it_all_holds_one_window_at_a_time(
        self, storage: ArchiveStorage, large: StoredObject
    ) -> None:
        # The worst case for the reader: every byte, sequentially, as a demuxer reading straight through would.
        digest = hashlib.sha256()
        tracemalloc.start()
        try:
            reader = await storage.open_seekable(large.key)

            def read_all() -> None:
                with reader:
                    while chunk := reader.read(256 * 1024):
                        digest.update(chunk)

            await asyncio.to_thread(read_all)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        print(  # noqa: T201
            f"read all of {large.bytes / MIB:.1f} MiB in {reader.requests} ranged GETs, "
            f"traced peak {peak / MIB:.2f} MiB"
        )
        assert digest.hexdigest() == large.sha256
        assert reader.bytes_fetched == large.bytes
        assert reader.requests >= large.bytes // RANGED_MAX_FETCH_BYTES
        assert peak < 3 * RANGED_MAX_FETCH_BYTES
