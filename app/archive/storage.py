"""The S3 side of the archive: streaming uploads in bounded memory, reads, deletes and the janitor.

Every asset is written to a deterministic key (`{prefix}/{video_id}/{variant}.{ext}`), so a job that runs
twice (a lease that lapsed, a retry after a crash) converges on one object instead of two. Uploads come from
a non-seekable async iterator (an upstream download) and never hold more than about
`part_size_bytes * (max_parts_in_flight + 1)` of it; anything that goes wrong before the object is complete
aborts the multipart upload, so no half-written object and no billed incomplete upload is left behind.
What a crash leaves (nobody to abort) is swept by `abort_stale_uploads` and by the bucket's
`AbortIncompleteMultipartUpload` lifecycle rule.

Streaming reads (`open_object`, then `ObjectStream.iter_chunks`: archived content, the audit's digest) read the
body up to `READ_AHEAD_CHUNKS` chunks of `READ_CHUNK_BYTES` ahead of the consumer (app/archive/readahead.py),
so S3 is read while the previous chunk goes out; that window is all a stream holds. Decoders that must seek (an
MP4's index may sit at its end) read an object through `open_seekable`: ranged GETs into one bounded read-ahead
window, never the whole object.

The full-file SHA-256 is ours, computed while streaming: a multipart object's S3 checksum is a checksum of
part checksums. It goes into the object's metadata on a single PUT, and into an object tag after a multipart
completion (metadata is fixed at CreateMultipartUpload, before the hash is known, and changing it later would
mean copying the object). The database row stays the record of truth; the tag lets anyone check a copy.

boto3 is blocking, so every call runs in a worker thread (`asyncio.to_thread`, or the same default executor for
a body's reads).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.archive.readahead import ReadAhead, ReadAheadBudget
from app.core.config import S3Settings
from app.models.asset import Variant

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        GetObjectRequestTypeDef,
        LifecycleRuleTypeDef,
        ObjectIdentifierTypeDef,
        UploadPartOutputTypeDef,
    )

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SHA256_FIELD = "sha256"  # metadata key (x-amz-meta-sha256) and tag key
# Enough bytes to tell the three formats apart: `RIFF????WEBP` is the longest signature.
MAGIC_BYTES = 12
READ_CHUNK_BYTES = 1024 * 1024
# Chunks a download holds at most: the one being sent and those read ahead (app/archive/readahead.py).
READ_AHEAD_CHUNKS = 4
# What all of a process's downloads may hold beyond one chunk each: its slow clients cost what they did before
# the read-ahead, plus at most this (an API pod's memory limit is 512 MiB).
READ_AHEAD_BUDGET_BYTES = 64 * 1024 * 1024
# The ranged reader's read-ahead: a fetch after a jump is small (a demuxer seeking to read an 8-byte box header
# should not pull megabytes), and doubles while the reads stay sequential, up to the bound that is all it holds.
RANGED_MIN_FETCH_BYTES = 64 * 1024
RANGED_MAX_FETCH_BYTES = 2 * 1024 * 1024
# AWS: an If-None-Match write loses with 412 when the key exists, or 409 when it races another completion.
_KEY_EXISTS_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
# DeleteObjects takes at most this many keys per call.
_DELETE_BATCH = 1000


class AssetRejected(Exception):
    """The bytes are not the asset they claim to be (magic bytes); retryable by the caller's policy."""


class IncompleteAsset(Exception):
    """The source ended early or ran long against expected_bytes, or failed mid-stream."""


class StorageError(Exception):
    """S3 refused or failed (after botocore's own retries)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @classmethod
    def from_botocore(cls, error: ClientError | BotoCoreError, operation: str) -> StorageError:
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return cls(f"S3 {operation} failed: {code}: {error}", code=code, status=status)
        return cls(f"S3 {operation} failed: {error}")

    @property
    def key_exists(self) -> bool:
        return self.code in _KEY_EXISTS_CODES or self.status in (409, 412)

    @property
    def not_found(self) -> bool:
        return self.code in _NOT_FOUND_CODES or self.status == 404


class ObjectNotFound(StorageError):
    """The key holds no object."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    bytes: int
    sha256: str  # hex; "" only from `head` of an object written by something else, without our tag
    etag: str | None
    content_type: str


class ObjectStream:
    """An open S3 object: read it with `async for chunk in stream.iter_chunks()`, then `await stream.aclose()`."""

    def __init__(
        self,
        body: StreamingBody,
        *,
        content_length: int,
        content_type: str,
        etag: str | None,
        content_range: str | None = None,
        read_ahead_budget: ReadAheadBudget | None = None,
    ) -> None:
        self._body = body
        self._budget = read_ahead_budget
        self.content_length = content_length
        self.content_type = content_type
        self.etag = etag
        # S3's `bytes first-last/size` for a ranged GET (`open_object(byte_range=...)`); None for the whole object.
        self.content_range = content_range
        self._reader: ReadAhead | None = None

    async def iter_chunks(
        self, chunk_size: int = READ_CHUNK_BYTES, *, read_ahead: int = READ_AHEAD_CHUNKS
    ) -> AsyncGenerator[bytes]:
        """The object's bytes in chunks of at most `chunk_size`, read in worker threads up to `read_ahead` chunks
        ahead of the consumer (app/archive/readahead.py): at most `chunk_size * read_ahead` bytes held, and
        beyond the first chunk only what the storage's read-ahead budget lends."""
        if self._reader is None:
            self._reader = ReadAhead(self._body, chunk_size=chunk_size, depth=read_ahead, budget=self._budget)
        reader = self._reader
        try:
            while chunk := await reader.next_chunk():
                yield chunk
        finally:
            # A consumer that stops early (or is dropped, or cancelled) stops the reads and gets the body closed
            # even if it never reaches `aclose`.
            reader.stop()

    async def aclose(self) -> None:
        # Closing before the end drops the connection instead of returning it to the pool: the right trade
        # for a client that went away mid-download.
        if self._reader is not None:
            await self._reader.aclose()
        else:
            await asyncio.to_thread(self._body.close)

    async def __aenter__(self) -> ObjectStream:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


class RangedObjectReader(io.RawIOBase):
    """A read-only, seekable file over one S3 object, read with ranged GETs: for decoders that must seek.

    An MP4 written without faststart keeps its index (`moov`) after the media, so a demuxer reads the head,
    jumps to the end, then back into the media; a plain GET would have to download everything before it.
    Each read is served from one read-ahead window of at most `max_fetch_bytes`, the only object data held:
    a read outside it replaces it with a fresh GET of `bytes=pos-end`. The window starts at `min_fetch_bytes`
    after a jump and doubles while reads continue where the last fetch ended.

    Every GET carries `If-Match` with the ETag seen when opening, so an object replaced mid-read fails with a
    StorageError instead of splicing two files. A failed GET raises once; the reader then reads as ended
    (b""), fetching nothing more. That is for FFmpeg: PyAV keeps what its read callback raised and re-raises
    it from the call in progress, but FFmpeg retries the read first, and each retry would be another GET
    against a failing S3 (with botocore's own retries) and another exception PyAV drops to stderr.

    Blocking (boto3): use it from a worker thread. Not thread-safe, like any file object. `requests` and
    `bytes_fetched` count what it cost.
    """

    def __init__(
        self,
        client: S3Client,
        *,
        bucket: str,
        key: str,
        size: int,
        etag: str | None,
        min_fetch_bytes: int = RANGED_MIN_FETCH_BYTES,
        max_fetch_bytes: int = RANGED_MAX_FETCH_BYTES,
    ) -> None:
        super().__init__()
        if not 0 < min_fetch_bytes <= max_fetch_bytes:
            raise ValueError(f"need 0 < min_fetch_bytes <= max_fetch_bytes, not {min_fetch_bytes}, {max_fetch_bytes}")
        self._client = client
        self._bucket = bucket
        self.key = key
        self.size = size
        self._etag = etag
        self._min_fetch = min_fetch_bytes
        self._max_fetch = max_fetch_bytes
        self._fetch = min_fetch_bytes
        self._position = 0
        self._window = b""
        self._window_start = 0
        self._failed = False
        self.requests = 0
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"unsupported whence {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        # Past the end is allowed, as for files; reads there return b"". Seeking fetches nothing by itself.
        self._position = position
        return position

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        self._checkClosed()
        with memoryview(buffer) as raw, raw.cast("B") as view:
            if not view or self._position >= self.size or self._failed:
                return 0
            offset = self._position - self._window_start
            if not 0 <= offset < len(self._window):
                try:
                    self._refill()
                except BaseException:
                    self._failed = True
                    raise
                offset = 0
            # A short read (the rest of the window) is allowed for a raw stream; the caller asks again.
            count = min(len(view), len(self._window) - offset)
            view[:count] = self._window[offset : offset + count]
        self._position += count
        return count

    def _refill(self) -> None:
        sequential = bool(self._window) and self._position == self._window_start + len(self._window)
        self._fetch = min(self._fetch * 2, self._max_fetch) if sequential else self._min_fetch
        length = min(self._fetch, self.size - self._position)
        first, last = self._position, self._position + length - 1
        # Dropped before the GET, so the old and the new window never coexist: the bound is one window.
        self._window = b""
        self._window_start = first
        request: GetObjectRequestTypeDef = {"Bucket": self._bucket, "Key": self.key, "Range": f"bytes={first}-{last}"}
        if self._etag:
            request["IfMatch"] = self._etag
        try:
            response = self._client.get_object(**request)
        except (ClientError, BotoCoreError) as error:
            raise StorageError.from_botocore(error, f"GetObject {self.key} bytes={first}-{last}") from error
        self.requests += 1
        body = response["Body"]
        try:
            # A server that ignores Range answers 200 with the whole object: refuse it before reading it.
            if response["ContentLength"] > length:
                raise StorageError(
                    f"S3 ignored Range bytes={first}-{last} of {self.key}: {response['ContentLength']} bytes"
                )
            data = body.read()
        except (ClientError, BotoCoreError) as error:
            raise StorageError.from_botocore(error, f"GetObject {self.key} bytes={first}-{last}") from error
        finally:
            body.close()
        if not data:
            # Returning 0 would read as end of file in the middle of the object.
            raise StorageError(f"S3 returned no bytes for bytes={first}-{last} of {self.key} ({self.size} bytes)")
        self.bytes_fetched += len(data)
        self._window = data

    def close(self) -> None:
        self._window = b""
        super().close()


def make_client(
    settings: S3Settings, *, connect_timeout: float = 5, read_timeout: float = 60, max_attempts: int = 3
) -> S3Client:
    """An S3 client for these settings; thread-safe, so one per process is enough.

    Readiness probes pass short timeouts and one attempt; everything else takes the defaults.
    """
    config = Config(
        # Shared by every concurrent transfer: worker jobs x parts in flight, plus API downloads.
        max_pool_connections=32,
        # Standard mode: 3 attempts with backoff on throttling, 5xx and connection errors; never on 4xx.
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        tcp_keepalive=True,
        # SigV4 everywhere, presigned URLs included (botocore would presign with SigV2 on custom endpoints).
        signature_version="s3v4",
        # CRC32 per request (and per part), checked by S3 before it stores anything: cheap (zlib), catches
        # corruption in transit as BadDigest.
        request_checksum_calculation="when_supported",
        # Self-hosted S3 servers (SeaweedFS, MinIO) behind an IP or a plain host name want path-style URLs.
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
    )
    # A session per client: boto3's default session is not safe to build clients from in several threads.
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id.get_secret_value(),
        aws_secret_access_key=settings.secret_access_key.get_secret_value(),
        region_name=settings.region,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


def looks_like(variant: Variant, head: bytes) -> bool:
    """Whether the first bytes carry the variant's file signature."""
    if variant is Variant.VIDEO:
        return head[4:8] == b"ftyp"
    if variant is Variant.THUMBNAIL:
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return head[:3] == b"\xff\xd8\xff"


def _blob(body: bytearray) -> bytes:
    # botocore sends a bytearray as is (its validator accepts one; the stubs say bytes only): bytes(body)
    # would copy a whole part.
    return cast("bytes", body)


def _clean_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


class ArchiveStorage:
    def __init__(self, settings: S3Settings, *, client: S3Client | None = None) -> None:
        self._settings = settings
        self._bucket = settings.bucket
        self._prefix = settings.prefix.strip("/")
        self._owns_client = client is None
        self._client = client if client is not None else make_client(settings)
        self._presign_client: S3Client | None = None
        # Shared by every stream this storage opens (one per process in the API).
        self.read_ahead_budget = ReadAheadBudget(READ_AHEAD_BUDGET_BYTES)
        if settings.public_endpoint_url:
            self._presign_client = make_client(
                settings.model_copy(update={"endpoint_url": settings.public_endpoint_url})
            )

    def key_for(self, video_id: str, variant: Variant) -> str:
        return f"{self._video_prefix(video_id)}{variant.value}.{variant.extension}"

    def _video_prefix(self, video_id: str) -> str:
        return f"{self._prefix}/{video_id}/" if self._prefix else f"{video_id}/"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
        if self._presign_client is not None:
            self._presign_client.close()

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise StorageError.from_botocore(error, getattr(function, "__name__", "call")) from error

    # -- bucket ------------------------------------------------------------------------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket if missing, and make sure incomplete multipart uploads expire after a day."""
        try:
            await self._call(self._client.head_bucket, Bucket=self._bucket)
        except StorageError as error:
            if not error.not_found:
                raise
            try:
                if self._settings.region == "us-east-1":
                    await self._call(self._client.create_bucket, Bucket=self._bucket)
                else:
                    await self._call(
                        self._client.create_bucket,
                        Bucket=self._bucket,
                        CreateBucketConfiguration={"LocationConstraint": self._settings.region},  # type: ignore[typeddict-item]
                    )
            except StorageError as create_error:
                # Another process created it between our HEAD and CREATE.
                if create_error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        await self._ensure_abort_rule()

    async def _ensure_abort_rule(self) -> None:
        # A rule is the backstop for uploads nobody aborted (a SIGKILLed worker); the janitor is the other.
        try:
            current = await self._call(self._client.get_bucket_lifecycle_configuration, Bucket=self._bucket)
            rules = list(current.get("Rules", []))
        except StorageError as error:
            if error.code != "NoSuchLifecycleConfiguration":
                logger.warning("S3 lifecycle rules unavailable (%s); relying on the janitor alone", error.code)
                return
            rules = []
        for rule in rules:
            covered = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
            if (
                rule.get("Status") == "Enabled"
                and "AbortIncompleteMultipartUpload" in rule
                and f"{self._prefix}/".startswith(covered)
            ):
                return
        ours: LifecycleRuleTypeDef = {
            "ID": "video-gateway-abort-incomplete-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": f"{self._prefix}/" if self._prefix else ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
        # PUT replaces the whole configuration: send the bucket's existing rules back unchanged, plus ours.
        new_rules = [*cast("list[LifecycleRuleTypeDef]", rules), ours]
        try:
            await self._call(
                self._client.put_bucket_lifecycle_configuration,
                Bucket=self._bucket,
                LifecycleConfiguration={"Rules": new_rules},
            )
        except StorageError as error:
            logger.warning("S3 refused the lifecycle rule (%s); relying on the janitor alone", error.code)

    # -- upload ------------------------------------------------------------------------------------------

    async def upload_stream(
        self, *, key: str, variant: Variant, chunks: AsyncIterator[bytes], expected_bytes: int | None
    ) -> StoredObject:
        """Stream `chunks` to `key`: one PUT up to one part, else multipart; all or nothing.

        Raises AssetRejected (wrong file signature, checked before anything is written), IncompleteAsset
        (source failed, or its length differs from `expected_bytes`) or StorageError. On any failure, the
        caller's cancellation included, the multipart upload is aborted before the exception propagates.
        """
        part_size = self._settings.part_size_bytes
        digest = hashlib.sha256()
        total = 0
        head = b""
        # Parts are filled in place in a preallocated buffer: growing one would copy it, doubling the peak.
        # A source announced smaller than a part gets a buffer of its size (a thumbnail needs no 8 MiB); it
        # cannot overflow it, since a source running past its announced length is refused before buffering.
        capacity = part_size if expected_bytes is None else max(0, min(part_size, expected_bytes))
        buffer = bytearray(capacity)
        filled = 0
        upload: _MultipartUpload | None = None
        iterator = aiter(chunks)
        try:
            while True:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    raise IncompleteAsset(f"source failed after {total} bytes: {error!r}") from error
                if not chunk:
                    continue
                if len(head) < MAGIC_BYTES:
                    head += chunk[: MAGIC_BYTES - len(head)]
                    if len(head) == MAGIC_BYTES:
                        self._check_signature(variant, head, key)
                digest.update(chunk)
                total += len(chunk)
                if expected_bytes is not None and total > expected_bytes:
                    raise IncompleteAsset(f"source ran long: more than the {expected_bytes} bytes announced")
                view = memoryview(chunk)
                while view:
                    if filled == capacity:
                        # A full part and more to come: this is a multipart upload.
                        if upload is None:
                            upload = await self._start_multipart(key, variant)
                        await upload.add_part(buffer)
                        buffer = bytearray(capacity)
                        filled = 0
                    take = min(capacity - filled, len(view))
                    buffer[filled : filled + take] = view[:take]
                    filled += take
                    view = view[take:]
            if len(head) < MAGIC_BYTES:
                self._check_signature(variant, head, key)  # a file shorter than the longest signature
            if expected_bytes is not None and total != expected_bytes:
                raise IncompleteAsset(f"source ended early: {total} of {expected_bytes} bytes")
            del buffer[filled:]  # shrinks in place
            sha256 = digest.hexdigest()
            if upload is None:
                return await self._put_single(key=key, variant=variant, body=buffer, sha256=sha256)
            await upload.add_part(buffer)
            del buffer
            return await upload.complete(sha256=sha256, size=total)
        except BaseException:
            if upload is not None:
                # Shielded: a second cancellation must not leave the upload behind half-aborted.
                await asyncio.shield(upload.abort())
            raise
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()

    @staticmethod
    def _check_signature(variant: Variant, head: bytes, key: str) -> None:
        if not looks_like(variant, head):
            raise AssetRejected(f"{key}: the first bytes {head[:MAGIC_BYTES]!r} are not a {variant.extension} file")

    async def _start_multipart(self, key: str, variant: Variant) -> _MultipartUpload:
        created = await self._call(
            self._client.create_multipart_upload,
            Bucket=self._bucket,
            Key=key,
            ContentType=variant.content_type,
            ChecksumAlgorithm="CRC32",
        )
        return _MultipartUpload(self, key=key, upload_id=created["UploadId"], content_type=variant.content_type)

    async def _put_single(self, *, key: str, variant: Variant, body: bytearray, sha256: str) -> StoredObject:
        size = len(body)

        async def put(*, only_if_absent: bool) -> str | None:
            response = await self._call(
                self._client.put_object,
                Bucket=self._bucket,
                Key=key,
                Body=_blob(body),
                ContentType=variant.content_type,
                Metadata={SHA256_FIELD: sha256},
                Tagging=f"{SHA256_FIELD}={sha256}",
                ChecksumAlgorithm="CRC32",
                **({"IfNoneMatch": "*"} if only_if_absent else {}),  # type: ignore[arg-type]
            )
            return _clean_etag(response.get("ETag"))

        try:
            etag = await put(only_if_absent=True)
        except StorageError as error:
            if not error.key_exists:
                raise
            existing = await self._same_object(key, sha256=sha256, size=size)
            if existing is not None:
                return existing
            etag = await put(only_if_absent=False)
        return StoredObject(key=key, bytes=size, sha256=sha256, etag=etag, content_type=variant.content_type)

    async def _same_object(self, key: str, *, sha256: str, size: int) -> StoredObject | None:
        """The object already at `key` if it is this very file, else None (and the caller overwrites it).

        Another writer of the same asset (a duplicate job) got there first. Its copy is ours byte for byte
        when the hashes agree. An object without our hash yet (the other writer is between completion and
        tagging) or with another hash is overwritten with what we just verified: the database will record
        our hash, so the object must match it.
        """
        existing = await self.head(key)
        if existing is not None and existing.sha256 == sha256 and existing.bytes == size:
            return existing
        logger.warning(
            "overwriting %s: the existing object is %s",
            key,
            "gone" if existing is None else f"{existing.bytes} bytes, sha256 {existing.sha256 or 'unknown'}",
        )
        return None

    # -- read, delete ------------------------------------------------------------------------------------

    async def open_object(self, key: str, *, byte_range: tuple[int, int] | None = None) -> ObjectStream:
        """The object at `key`, or with `byte_range` (first, last: inclusive offsets within the object) only
        those bytes, through a ranged GET (a player seeking in an archived MP4). Raises ObjectNotFound when
        there is no object; a range the object cannot satisfy is S3's 416, a StorageError."""
        request: GetObjectRequestTypeDef = {"Bucket": self._bucket, "Key": key}
        if byte_range is not None:
            request["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        try:
            response = await self._call(self._client.get_object, **request)
        except StorageError as error:
            if error.not_found:
                raise ObjectNotFound(f"no object at {key}", code=error.code, status=error.status) from error
            raise
        stream = ObjectStream(
            response["Body"],
            content_length=response["ContentLength"],
            content_type=response.get("ContentType", "application/octet-stream"),
            etag=_clean_etag(response.get("ETag")),
            content_range=response.get("ContentRange") if byte_range is not None else None,
            read_ahead_budget=self.read_ahead_budget,
        )
        if byte_range is not None and (
            stream.content_range is None or stream.content_length > byte_range[1] - byte_range[0] + 1
        ):
            # A server that ignored Range answers with the whole object: never pass that off as the range.
            await stream.aclose()
            raise StorageError(f"S3 ignored Range bytes={byte_range[0]}-{byte_range[1]} of {key}")
        return stream

    async def read_digest(self, key: str) -> tuple[int, str]:
        """Read the whole object at `key` and return its size and SHA-256 (hex), one chunk in memory at a time.

        The audit's full check. Raises ObjectNotFound when there is no object, StorageError on any other failure.
        """
        digest = hashlib.sha256()
        size = 0
        async with await self.open_object(key) as stream:
            try:
                async for chunk in stream.iter_chunks():
                    digest.update(chunk)
                    size += len(chunk)
            except (ClientError, BotoCoreError) as error:
                raise StorageError.from_botocore(error, f"GetObject {key}") from error
        return size, digest.hexdigest()

    async def open_seekable(self, key: str) -> RangedObjectReader:
        """A seekable, read-only file over the object at `key`, for decoders (see RangedObjectReader).

        One HEAD now, for its size and ETag; the reads are blocking ranged GETs, so hand the reader to a
        worker thread. Raises ObjectNotFound when there is no object.
        """
        try:
            response = await self._call(self._client.head_object, Bucket=self._bucket, Key=key)
        except StorageError as error:
            if error.not_found:
                raise ObjectNotFound(f"no object at {key}", code=error.code, status=error.status) from error
            raise
        return RangedObjectReader(
            self._client, bucket=self._bucket, key=key, size=response["ContentLength"], etag=response.get("ETag")
        )

    def presign_get(self, key: str, *, ttl_seconds: int, content_type: str) -> str:
        """A time-limited GET URL for services that read the archive straight from S3.

        Signing is local computation (no request is made), so it needs no thread. When the S3 endpoint
        callers reach differs from ours (`public_endpoint_url`), the URL is signed for theirs.
        """
        client = self._presign_client or self._client
        url: str = client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._settings.bucket, "Key": key, "ResponseContentType": content_type},
            ExpiresIn=ttl_seconds,
        )
        return url

    async def head(self, key: str) -> StoredObject | None:
        try:
            response = await self._call(self._client.head_object, Bucket=self._bucket, Key=key)
        except StorageError as error:
            if error.not_found:
                return None
            raise
        sha256 = response.get("Metadata", {}).get(SHA256_FIELD) or await self._sha256_tag(key)
        return StoredObject(
            key=key,
            bytes=response["ContentLength"],
            sha256=sha256,
            etag=_clean_etag(response.get("ETag")),
            content_type=response.get("ContentType", "application/octet-stream"),
        )

    async def _sha256_tag(self, key: str) -> str:
        try:
            tags = await self._call(self._client.get_object_tagging, Bucket=self._bucket, Key=key)
        except StorageError as error:
            if error.not_found:
                return ""
            raise
        return next((tag["Value"] for tag in tags.get("TagSet", []) if tag["Key"] == SHA256_FIELD), "")

    async def delete_video(self, video_id: str) -> None:
        """Delete every object under the video's prefix (its three variants)."""
        prefix = self._video_prefix(video_id)

        def list_keys() -> list[str]:
            paginator = self._client.get_paginator("list_objects_v2")
            return [
                item["Key"]
                for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]

        keys = await self._call(list_keys)
        for start in range(0, len(keys), _DELETE_BATCH):
            objects: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
            response = await self._call(
                self._client.delete_objects, Bucket=self._bucket, Delete={"Objects": objects, "Quiet": True}
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 could not delete {len(errors)} object(s) of {video_id}, e.g. {first.get('Key')}: "
                    f"{first.get('Code')}",
                    code=first.get("Code"),
                )

    # -- janitor -----------------------------------------------------------------------------------------

    async def abort_stale_uploads(self, *, older_than: timedelta) -> int:
        """Abort our incomplete multipart uploads initiated before now - `older_than`; returns how many.

        These are what a killed worker leaves: it never got to abort. `older_than` must exceed the longest
        possible live upload, or the janitor would abort a transfer still in progress.
        """
        cutoff = datetime.now(UTC) - older_than
        prefix = f"{self._prefix}/" if self._prefix else ""

        def list_stale() -> list[tuple[str, str]]:
            paginator = self._client.get_paginator("list_multipart_uploads")
            return [
                (upload["Key"], upload["UploadId"])
                for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix)
                for upload in page.get("Uploads", [])
                if upload["Initiated"] < cutoff
            ]

        aborted = 0
        for key, upload_id in await self._call(list_stale):
            try:
                await self._call(self._client.abort_multipart_upload, Bucket=self._bucket, Key=key, UploadId=upload_id)
            except StorageError as error:
                if error.code != "NoSuchUpload":  # finished or aborted meanwhile: nothing left to do
                    raise
                continue
            aborted += 1
        if aborted:
            logger.info("aborted %d stale multipart upload(s) older than %s", aborted, older_than)
        return aborted


class _MultipartUpload:
    """One multipart upload in progress: at most `max_parts_in_flight` parts uploading at once."""

    def __init__(self, storage: ArchiveStorage, *, key: str, upload_id: str, content_type: str) -> None:
        self._storage = storage
        self._client = storage._client
        self._bucket = storage._bucket
        self._max_in_flight = storage._settings.max_parts_in_flight
        self.key = key
        self.upload_id = upload_id
        self._content_type = content_type
        self._pending: set[asyncio.Task[CompletedPartTypeDef]] = set()
        self._parts: list[CompletedPartTypeDef] = []
        self._next_part = 1
        self._completed = False

    async def add_part(self, body: bytearray) -> None:
        """Start uploading `body` as the next part, once a slot is free; raises the first failed part's error.

        Waiting here is the back-pressure: the caller stops reading the source while every slot is busy.
        """
        while len(self._pending) >= self._max_in_flight:
            await self._collect(asyncio.FIRST_COMPLETED)
        number = self._next_part
        self._next_part += 1
        self._pending.add(asyncio.create_task(self._upload_part(number, body)))

    async def _upload_part(self, number: int, body: bytearray) -> CompletedPartTypeDef:
        # The thread takes the only reference to the part and drops it before its result reaches the loop.
        # Arguments given to to_thread stay alive in the executor's work item a moment after the result is
        # delivered: long enough, measured, for the loop to allocate the next part beside a dead one.
        parcel = [body]
        del body

        def upload_part() -> UploadPartOutputTypeDef:
            return self._client.upload_part(
                Bucket=self._bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=_blob(parcel.pop()),
                ChecksumAlgorithm="CRC32",
            )

        response = await self._storage._call(upload_part)
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    async def _collect(self, return_when: str) -> None:
        done, self._pending = await asyncio.wait(self._pending, return_when=return_when)
        failure: BaseException | None = None
        for task in done:
            # Retrieve every outcome, so no failed task is reported "never retrieved".
            error = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if error is None:
                self._parts.append(task.result())
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure

    async def complete(self, *, sha256: str, size: int) -> StoredObject:
        if self._pending:
            await self._collect(asyncio.ALL_COMPLETED)
        parts = sorted(self._parts, key=lambda part: part["PartNumber"])

        async def complete(*, only_if_absent: bool) -> str | None:
            response = await self._storage._call(
                self._client.complete_multipart_upload,
                Bucket=self._bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
                **({"IfNoneMatch": "*"} if only_if_absent else {}),  # type: ignore[arg-type]
            )
            self._completed = True
            return _clean_etag(response.get("ETag"))

        try:
            etag = await complete(only_if_absent=True)
        except StorageError as error:
            if not error.key_exists:
                raise
            existing = await self._storage._same_object(self.key, sha256=sha256, size=size)
            if existing is not None:
                await self.abort()  # ours is redundant; don't leave it behind
                return existing
            etag = await complete(only_if_absent=False)
        await self._tag(sha256)
        return StoredObject(key=self.key, bytes=size, sha256=sha256, etag=etag, content_type=self._content_type)

    async def _tag(self, sha256: str) -> None:
        try:
            await self._storage._call(
                self._client.put_object_tagging,
                Bucket=self._bucket,
                Key=self.key,
                Tagging={"TagSet": [{"Key": SHA256_FIELD, "Value": sha256}]},
            )
        except StorageError as error:
            # The object is complete and correct, and the caller records the hash in the database; failing
            # the job here would only re-download a good asset.
            logger.warning("could not tag %s with its sha256 (%s); the database keeps it", self.key, error.code)

    async def abort(self) -> None:
        """Abort the upload after the parts still in flight have finished (a part landing after the abort
        could otherwise survive it, as AWS warns). Never raises: the caller is already handling a failure."""
        if self._completed:
            return
        if self._pending:
            # Not cancelled: their threads would run on regardless. Each is at most one part.
            await asyncio.wait(self._pending)
            for task in self._pending:
                if not task.cancelled():
                    task.exception()
            self._pending = set()
        try:
            await self._storage._call(
                self._client.abort_multipart_upload, Bucket=self._bucket, Key=self.key, UploadId=self.upload_id
            )
        except StorageError as error:
            if error.code != "NoSuchUpload":
                logger.warning("could not abort the upload of %s (%s); the janitor will", self.key, error.code)
        self._completed = True
