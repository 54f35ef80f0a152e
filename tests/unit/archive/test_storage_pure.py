"""ArchiveStorage's pure parts: file signatures, key layout and how S3 errors are classified."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.archive.storage import ArchiveStorage, StorageError, looks_like
from app.core.config import S3Settings
from app.models.asset import Variant

MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"
HTML = b"<!DOCTYPE html><html>"


class TestLooksLike:
    @pytest.mark.parametrize(
        ("variant", "head", "expected"),
        [
            (Variant.VIDEO, MP4, True),
            (Variant.VIDEO, b"\x00\x00\x00\x1cftypmp42", True),
            (Variant.VIDEO, WEBP, False),
            (Variant.VIDEO, HTML, False),
            (Variant.THUMBNAIL, WEBP, True),
            (Variant.THUMBNAIL, b"RIFF\x24\x00\x00\x00WAVEfmt ", False),  # RIFF, but audio
            (Variant.THUMBNAIL, JPEG, False),
            (Variant.SPRITESHEET, JPEG, True),
            (Variant.SPRITESHEET, b"\xff\xd8\xff", True),
            (Variant.SPRITESHEET, b"\xff\xd8", False),
            (Variant.SPRITESHEET, HTML, False),
            (Variant.VIDEO, b"", False),
        ],
    )
    def test_signature(self, variant: Variant, head: bytes, expected: bool) -> None:
        assert looks_like(variant, head) is expected


class TestKeys:
    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("videos", "videos/video_1/video.mp4"),
            ("/archive/v1/", "archive/v1/video_1/video.mp4"),
            ("", "video_1/video.mp4"),
        ],
    )
    def test_key_for_is_deterministic(self, prefix: str, expected: str) -> None:
        storage = ArchiveStorage(S3Settings(prefix=prefix))
        try:
            assert storage.key_for("video_1", Variant.VIDEO) == expected
            assert storage.key_for("video_1", Variant.THUMBNAIL).endswith("video_1/thumbnail.webp")
            assert storage.key_for("video_1", Variant.SPRITESHEET).endswith("video_1/spritesheet.jpg")
        finally:
            storage.close()


class TestStorageError:
    @staticmethod
    def from_code(code: str, status: int) -> StorageError:
        response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        error = ClientError(response, "Op")
        return StorageError.from_botocore(error, "op")

    def test_conditional_write_losers_are_key_exists(self) -> None:
        assert self.from_code("PreconditionFailed", 412).key_exists
        assert self.from_code("ConditionalRequestConflict", 409).key_exists
        assert not self.from_code("BadDigest", 400).key_exists

    def test_head_404_is_not_found(self) -> None:
        assert self.from_code("404", 404).not_found
        assert not self.from_code("AccessDenied", 403).not_found
