"""ArchiveStorage against a real S3 server (a private SeaweedFS): docs/reliability.md rows 26-32 and 36.

Only row 30's BadDigest is also driven through botocore's Stubber, to pin the exact S3 error; SeaweedFS checks
part checksums itself, so the same fault is tested on the real server too.
"""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import ANY, Stubber

from app.archive.storage import (
    ArchiveStorage,
    AssetRejected,
    IncompleteAsset,
    StorageError,
    make_client,
)
from app.core.config import S3Settings
from app.models.asset import Variant
from tests.support.settings import MIB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

SIGNATURES = {
    Variant.VIDEO: b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00",
    Variant.THUMBNAIL: b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    Variant.SPRITESHEET: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
}
HTML = b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>try later</body></html>"


def asset(variant: Variant, size: int, *, seed: int = 0) -> bytes:
    """`size` bytes with the variant's signature in front and seeded noise after it."""
    signature = SIGNATURES[variant]
    return signature + random.Random(seed).randbytes(size - len(signature))


async def chunked(data: bytes, *, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]
        await asyncio.sleep(0)  # a network source yields to the loop between reads


async def failing_after(data: bytes, fail_at: int, *, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The source resets the connection once `fail_at` bytes have been sent."""
    async for piece in chunked(data[:fail_at], chunk=chunk):
        yield piece
    raise ConnectionResetError("peer reset the connection")


def sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@dataclass
class Spy:
    """The S3 operations a client sent, with their parameters (recorded before serialisation).

    A body is kept as its length only: holding on to every part would defeat the memory test.
    """

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, {key: len(value) if key == "Body" else value for key, value in params.items()}))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [params for called, params in self.calls if called == name]


@pytest.fixture
def spy(s3_client: S3Client) -> Iterator[Spy]:
    recorder = Spy()
    s3_client.meta.events.register("before-parameter-build.s3", recorder)
    yield recorder
    s3_client.meta.events.unregister("before-parameter-build.s3", recorder)


def open_uploads(client: S3Client, settings: S3Settings) -> list[str]:
    response = client.list_multipart_uploads(Bucket=settings.bucket, Prefix=f"{settings.prefix}/")
    return [upload["Key"] for upload in response.get("Uploads", [])]


def stored_keys(client: S3Client, settings: S3Settings) -> list[str]:
    response = client.list_objects_v2(Bucket=settings.bucket, Prefix=f"{settings.prefix}/")
    return [item["Key"] for item in response.get("Contents", [])]


async def read_back(storage: ArchiveStorage, key: str) -> tuple[bytes, int, str]:
    stream = await storage.open_object(key)
    try:
        body = b"".join([chunk async for chunk in stream.iter_chunks()])
    finally:
        await stream.aclose()
    return body, stream.content_length, stream.content_type


class TestRoundTrip:
    """Row 26: every variant comes back byte for byte, typed, with its SHA-256 and size recorded."""

    @pytest.mark.parametrize(
        ("variant", "size"),
        [
            (Variant.VIDEO, 11 * MIB + 123),  # multipart: 5 + 5 + 1 MiB
            (Variant.THUMBNAIL, 48 * 1024),  # single PUT
            (Variant.SPRITESHEET, 700 * 1024),  # single PUT
        ],
    )
    async def test_variant_round_trips_byte_for_byte(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, variant: Variant, size: int
    ) -> None:
        data = asset(variant, size)
        key = storage.key_for("video_rt", variant)

        stored = await storage.upload_stream(key=key, variant=variant, chunks=chunked(data), expected_bytes=size)

        assert key == f"{s3_settings.prefix}/video_rt/{variant.value}.{variant.extension}"
        assert (stored.key, stored.bytes, stored.sha256) == (key, size, sha256_hex(data))
        assert stored.content_type == variant.content_type and stored.etag
        body, length, content_type = await read_back(storage, key)
        assert body == data
        assert (length, content_type) == (size, variant.content_type)
        assert await storage.head(key) == stored
        tags = s3_client.get_object_tagging(Bucket=s3_settings.bucket, Key=key)["TagSet"]
        assert {"Key": "sha256", "Value": stored.sha256} in tags
        metadata = s3_client.head_object(Bucket=s3_settings.bucket, Key=key)["Metadata"]
        # Metadata only on a single PUT: a multipart upload's metadata is fixed before the hash is known.
        assert metadata.get("sha256") == (None if size > s3_settings.part_size_bytes else stored.sha256)
        assert open_uploads(s3_client, s3_settings) == []

    async def test_head_of_missing_key_is_none(self, storage: ArchiveStorage) -> None:
        assert await storage.head(storage.key_for("video_none", Variant.VIDEO)) is None

    async def test_delete_video_removes_every_variant_of_that_video_only(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
    ) -> None:
        for video_id in ("video_1", "video_10"):
            for variant in Variant:
                data = asset(variant, 4096)
                key = storage.key_for(video_id, variant)
                await storage.upload_stream(key=key, variant=variant, chunks=chunked(data), expected_bytes=None)

        await storage.delete_video("video_1")

        assert sorted(stored_keys(s3_client, s3_settings)) == sorted(
            storage.key_for("video_10", variant) for variant in Variant
        )


class TestSourceFailures:
    """Row 27: a truncated or failing source completes no object and leaves no multipart upload."""

    async def test_source_reset_at_half_aborts_the_multipart_upload(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, spy: Spy
    ) -> None:
        data = asset(Variant.VIDEO, 14 * MIB)
        key = storage.key_for("video_reset", Variant.VIDEO)

        with pytest.raises(IncompleteAsset, match="source failed"):
            await storage.upload_stream(
                key=key, variant=Variant.VIDEO, chunks=failing_after(data, 7 * MIB), expected_bytes=len(data)
            )

        assert spy.names().count("UploadPart") == 1  # a part was really uploaded before the reset
        assert spy.of("AbortMultipartUpload") != []
        assert await storage.head(key) is None
        assert open_uploads(s3_client, s3_settings) == []

    @pytest.mark.parametrize("size", [12 * MIB, 100 * 1024], ids=["multipart", "single-put"])
    async def test_source_shorter_than_announced_stores_nothing(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, size: int
    ) -> None:
        data = asset(Variant.VIDEO, size)
        key = storage.key_for("video_short", Variant.VIDEO)

        with pytest.raises(IncompleteAsset, match="ended early"):
            await storage.upload_stream(
                key=key, variant=Variant.VIDEO, chunks=chunked(data[: size // 2]), expected_bytes=size
            )

        assert await storage.head(key) is None
        assert open_uploads(s3_client, s3_settings) == []

    async def test_source_longer_than_announced_stores_nothing(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
    ) -> None:
        data = asset(Variant.VIDEO, 12 * MIB)
        key = storage.key_for("video_long", Variant.VIDEO)

        with pytest.raises(IncompleteAsset, match="ran long"):
            await storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=11 * MIB)

        assert await storage.head(key) is None
        assert open_uploads(s3_client, s3_settings) == []

    async def test_cancellation_mid_upload_aborts_the_multipart_upload(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, spy: Spy
    ) -> None:
        data = asset(Variant.VIDEO, 12 * MIB)
        key = storage.key_for("video_cancel", Variant.VIDEO)
        stalled = asyncio.Event()

        async def stalls_after_six_mib() -> AsyncIterator[bytes]:
            async for piece in chunked(data[: 6 * MIB]):
                yield piece
            stalled.set()
            await asyncio.Event().wait()  # the upstream stops sending; the worker's deadline cancels us
            yield b""

        upload = asyncio.create_task(
            storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=stalls_after_six_mib(), expected_bytes=None)
        )
        await asyncio.wait_for(stalled.wait(), timeout=10)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload

        assert spy.names().count("CreateMultipartUpload") == 1
        assert await storage.head(key) is None
        assert open_uploads(s3_client, s3_settings) == []

    async def test_part_corrupted_in_transit_is_refused_and_aborted(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
    ) -> None:
        """Row 30 on the real server: the part's CRC32 was computed before the bytes changed → BadDigest."""

        def corrupt_second_part(request: Any, **_: Any) -> None:
            if "partNumber=2" in request.url:
                request.data = b"\x00" * len(request.data)

        s3_client.meta.events.register("before-sign.s3.UploadPart", corrupt_second_part)
        data = asset(Variant.VIDEO, 12 * MIB)
        key = storage.key_for("video_corrupt", Variant.VIDEO)

        with pytest.raises(StorageError) as caught:
            await storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=None)

        assert caught.value.code == "BadDigest"
        assert await storage.head(key) is None
        assert open_uploads(s3_client, s3_settings) == []


class TestStaleUploads:
    """Row 28: what a SIGKILLed worker leaves is swept by the janitor, and the bucket has a lifecycle rule."""

    async def test_janitor_aborts_only_uploads_older_than_the_threshold_under_its_prefix(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
    ) -> None:
        bucket = s3_settings.bucket
        # A worker killed mid-upload: the upload was started, a part sent, and nobody aborted it.
        orphan = s3_client.create_multipart_upload(Bucket=bucket, Key=storage.key_for("video_killed", Variant.VIDEO))
        s3_client.upload_part(
            Bucket=bucket, Key=orphan["Key"], UploadId=orphan["UploadId"], PartNumber=1, Body=b"x" * 1024
        )
        other = s3_client.create_multipart_upload(Bucket=bucket, Key=f"elsewhere-{s3_settings.prefix}/file")

        try:
            assert await storage.abort_stale_uploads(older_than=timedelta(hours=1)) == 0
            assert open_uploads(s3_client, s3_settings) == [orphan["Key"]]

            await asyncio.sleep(1.1)  # S3 reports initiation times to the second
            assert await storage.abort_stale_uploads(older_than=timedelta(0)) == 1

            assert open_uploads(s3_client, s3_settings) == []
            others = s3_client.list_multipart_uploads(Bucket=bucket, Prefix=f"elsewhere-{s3_settings.prefix}/")
            assert [upload["UploadId"] for upload in others.get("Uploads", [])] == [other["UploadId"]]
        finally:
            s3_client.abort_multipart_upload(Bucket=bucket, Key=other["Key"], UploadId=other["UploadId"])

    async def test_ensure_bucket_creates_the_bucket_with_an_abort_incomplete_uploads_rule(
        self, s3_settings: S3Settings, s3_client: S3Client
    ) -> None:
        settings = s3_settings.model_copy(update={"bucket": f"{s3_settings.bucket}-new"})
        storage = ArchiveStorage(settings, client=s3_client)

        await storage.ensure_bucket()
        await storage.ensure_bucket()  # idempotent: no second bucket error, no duplicate rule

        rules = s3_client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
        abort_rules = [rule for rule in rules if "AbortIncompleteMultipartUpload" in rule]
        assert len(abort_rules) == 1
        assert abort_rules[0]["Status"] == "Enabled"
        assert abort_rules[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
        assert abort_rules[0]["Filter"] == {"Prefix": f"{settings.prefix}/"}

    async def test_ensure_bucket_keeps_rules_the_bucket_already_has(
        self, s3_settings: S3Settings, s3_client: S3Client
    ) -> None:
        settings = s3_settings.model_copy(update={"bucket": f"{s3_settings.bucket}-ruled"})
        s3_client.create_bucket(Bucket=settings.bucket)
        s3_client.put_bucket_lifecycle_configuration(
            Bucket=settings.bucket,
            LifecycleConfiguration={
                "Rules": [{"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 7}}]
            },
        )

        await ArchiveStorage(settings, client=s3_client).ensure_bucket()

        rules = s3_client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
        assert sorted(rule.get("ID", "") for rule in rules) == ["logs", "video-gateway-abort-incomplete-uploads"]


class TestDuplicateWriters:
    """Row 29: two writers of the same asset leave exactly one complete object with the right hash."""

    @pytest.mark.parametrize("size", [11 * MIB, 300 * 1024], ids=["multipart", "single-put"])
    async def test_two_concurrent_uploads_of_one_key_leave_one_object(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, size: int
    ) -> None:
        data = asset(Variant.VIDEO, size)
        key = storage.key_for("video_twice", Variant.VIDEO)

        first, second = await asyncio.gather(
            storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=size),
            storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=size),
        )

        assert first.sha256 == second.sha256 == sha256_hex(data)
        assert stored_keys(s3_client, s3_settings) == [key]
        assert open_uploads(s3_client, s3_settings) == []
        head = await storage.head(key)
        assert head is not None and (head.sha256, head.bytes) == (sha256_hex(data), size)
        assert (await read_back(storage, key))[0] == data

    @pytest.mark.parametrize("size", [11 * MIB, 300 * 1024], ids=["multipart", "single-put"])
    async def test_a_repeated_upload_keeps_the_existing_identical_object(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, size: int
    ) -> None:
        data = asset(Variant.VIDEO, size)
        key = storage.key_for("video_again", Variant.VIDEO)
        first = await storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=size)
        modified = s3_client.head_object(Bucket=s3_settings.bucket, Key=key)["LastModified"]
        await asyncio.sleep(1.1)  # LastModified has one-second resolution

        again = await storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=size)

        assert again == first
        assert s3_client.head_object(Bucket=s3_settings.bucket, Key=key)["LastModified"] == modified
        assert open_uploads(s3_client, s3_settings) == []

    async def test_an_upload_replaces_a_different_object_at_its_key(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings
    ) -> None:
        key = storage.key_for("video_stale", Variant.VIDEO)
        s3_client.put_object(Bucket=s3_settings.bucket, Key=key, Body=asset(Variant.VIDEO, 1000, seed=1))
        data = asset(Variant.VIDEO, 11 * MIB, seed=2)

        stored = await storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=None)

        assert stored.sha256 == sha256_hex(data)
        assert await storage.head(key) == stored
        assert (await read_back(storage, key))[0] == data
        assert open_uploads(s3_client, s3_settings) == []


class TestBadDigestStubbed:
    """Row 30: S3 answers a part with BadDigest → StorageError, and the multipart upload is aborted first."""

    async def test_bad_digest_on_a_part_aborts_and_raises_storage_error(self, s3_settings: S3Settings) -> None:
        settings = s3_settings.model_copy(update={"max_parts_in_flight": 1})  # one order of calls, for Stubber
        client = make_client(settings)
        storage = ArchiveStorage(settings, client=client)
        key = storage.key_for("video_digest", Variant.VIDEO)
        target = {"Bucket": settings.bucket, "Key": key}
        stubber = Stubber(client)
        stubber.add_response(
            "create_multipart_upload",
            {"UploadId": "upload-1", **target},
            {**target, "ContentType": "video/mp4", "ChecksumAlgorithm": "CRC32"},
        )
        stubber.add_client_error(
            "upload_part",
            service_error_code="BadDigest",
            service_message="The Content-MD5 or checksum value that you specified did not match what we received.",
            http_status_code=400,
            expected_params={
                **target,
                "UploadId": "upload-1",
                "PartNumber": 1,
                "Body": ANY,
                "ChecksumAlgorithm": "CRC32",
            },
        )
        stubber.add_response("abort_multipart_upload", {}, {**target, "UploadId": "upload-1"})
        data = asset(Variant.VIDEO, 7 * MIB)

        try:
            with stubber, pytest.raises(StorageError) as caught:
                await storage.upload_stream(key=key, variant=Variant.VIDEO, chunks=chunked(data), expected_bytes=None)
            stubber.assert_no_pending_responses()
        finally:
            client.close()

        assert caught.value.code == "BadDigest"
        assert caught.value.status == 400


class TestMemoryBound:
    """Row 31: memory stays near part size x (parts in flight + 1), however large the file."""

    async def test_a_96_mib_stream_stays_within_the_part_budget(
        self, storage: ArchiveStorage, s3_settings: S3Settings, spy: Spy
    ) -> None:
        size = 96 * MIB
        chunk = asset(Variant.VIDEO, 256 * 1024)  # the same chunk over and over: the source itself holds ~nothing
        # The design bound is part x (in flight + 1); one part of slack for botocore and the loop.
        budget = s3_settings.part_size_bytes * (s3_settings.max_parts_in_flight + 2)

        async def synthetic() -> AsyncIterator[bytes]:
            for _ in range(size // len(chunk)):
                yield chunk

        tracemalloc.start()
        try:
            stored = await storage.upload_stream(
                key=storage.key_for("video_big", Variant.VIDEO),
                variant=Variant.VIDEO,
                chunks=synthetic(),
                expected_bytes=size,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        print(f"peak traced memory, {size // MIB} MiB upload: {peak / MIB:.1f} MiB (budget {budget // MIB} MiB)")  # noqa: T201
        assert stored.bytes == size
        assert len(spy.of("UploadPart")) == 20  # 19 parts of 5 MiB + one of 1 MiB
        assert peak < budget


class TestPartSizing:
    """Row 32: above one part the upload is multipart, with parts of exactly part_size except the last."""

    async def test_large_object_is_uploaded_in_parts_of_part_size(self, storage: ArchiveStorage, spy: Spy) -> None:
        data = asset(Variant.VIDEO, 17 * MIB + 5)

        stored = await storage.upload_stream(
            key=storage.key_for("video_parts", Variant.VIDEO),
            variant=Variant.VIDEO,
            chunks=chunked(data),
            expected_bytes=None,
        )

        parts = [(params["PartNumber"], params["Body"]) for params in spy.of("UploadPart")]
        assert sorted(parts) == [(1, 5 * MIB), (2, 5 * MIB), (3, 5 * MIB), (4, 2 * MIB + 5)]
        assert spy.of("PutObject") == []
        assert stored.etag is not None and stored.etag.endswith("-4")  # S3's multipart ETag names the parts

    async def test_object_of_exactly_one_part_is_a_single_put(self, storage: ArchiveStorage, spy: Spy) -> None:
        data = asset(Variant.VIDEO, 5 * MIB)

        await storage.upload_stream(
            key=storage.key_for("video_one", Variant.VIDEO),
            variant=Variant.VIDEO,
            chunks=chunked(data),
            expected_bytes=None,
        )

        assert spy.names().count("PutObject") == 1
        assert "CreateMultipartUpload" not in spy.names()

    async def test_server_refuses_parts_below_five_mib(self, s3_client: S3Client, s3_settings: S3Settings) -> None:
        """Why part_size_bytes has a 5 MiB floor: the server under test enforces S3's minimum."""
        bucket, key = s3_settings.bucket, f"{s3_settings.prefix}/small-parts"
        upload = s3_client.create_multipart_upload(Bucket=bucket, Key=key)
        try:
            parts: list[CompletedPartTypeDef] = [
                {
                    "PartNumber": number,
                    "ETag": s3_client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=b"x" * 1024
                    )["ETag"],
                }
                for number in (1, 2)
            ]
            with pytest.raises(s3_client.exceptions.ClientError, match="EntityTooSmall"):
                s3_client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
                )
        finally:
            s3_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])


class TestContentSniffing:
    """Row 36: bytes that are not the claimed format are refused before anything is written."""

    @pytest.mark.parametrize("variant", list(Variant))
    async def test_html_page_served_as_asset_is_rejected_and_nothing_stored(
        self, storage: ArchiveStorage, s3_client: S3Client, s3_settings: S3Settings, spy: Spy, variant: Variant
    ) -> None:
        key = storage.key_for("video_html", variant)
        served: list[int] = []

        async def html_then_more() -> AsyncIterator[bytes]:
            for index in range(1000):  # a long page: the check must not wait for all of it
                served.append(index)
                yield HTML

        with pytest.raises(AssetRejected):
            await storage.upload_stream(key=key, variant=variant, chunks=html_then_more(), expected_bytes=None)

        assert served == [0]
        assert spy.calls == []  # no S3 call at all
        assert stored_keys(s3_client, s3_settings) == []

    async def test_another_format_is_rejected(self, storage: ArchiveStorage, spy: Spy) -> None:
        jpeg = asset(Variant.SPRITESHEET, 2048)

        with pytest.raises(AssetRejected):
            await storage.upload_stream(
                key=storage.key_for("video_x", Variant.THUMBNAIL),
                variant=Variant.THUMBNAIL,
                chunks=chunked(jpeg, chunk=5),  # signature split across chunks
                expected_bytes=None,
            )

        assert spy.calls == []

    async def test_empty_body_is_rejected(self, storage: ArchiveStorage, spy: Spy) -> None:
        with pytest.raises(AssetRejected):
            await storage.upload_stream(
                key=storage.key_for("video_empty", Variant.VIDEO),
                variant=Variant.VIDEO,
                chunks=chunked(b""),
                expected_bytes=0,
            )

        assert spy.calls == []
