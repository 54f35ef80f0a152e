"""Content served from the archive: byte ranges (players seek), and clean answers when the archived copy is
missing from S3 (503 `asset_unavailable`) or was found lost by the integrity audit (404 `asset_lost`)."""

from __future__ import annotations

import hashlib
import logging

import httpx
import pytest
from sqlalchemy import update

from app.models import Asset, Variant
from tests.integration.worker.test_archive_flow import assets, create_video, enqueue_sync, wait_upstream_completed
from tests.support.worker import ArchiveStack


async def archived_video(stack: ArchiveStack) -> tuple[str, bytes]:
    """A video archived by the worker and then forgotten upstream, so only the archive can serve it."""
    video_id = await create_video(stack)
    await wait_upstream_completed(stack, video_id)
    await enqueue_sync(stack, video_id)
    await stack.worker().run_until_idle()
    assert (await assets(stack, video_id))["video"].state == "archived"
    upstream_id = await stack.upstream_id(video_id)
    assert (await stack.simulator.post(f"/_sim/videos/{upstream_id}/expire")).status_code == 200
    whole = await stack.api.get(f"/v1/videos/{video_id}/content")
    assert whole.status_code == 200, whole.text
    return video_id, whole.content


async def ranged(stack: ArchiveStack, video_id: str, value: str, **params: str) -> httpx.Response:
    return await stack.api.get(f"/v1/videos/{video_id}/content", params=params, headers={"range": value})


class TestRanges:
    async def test_single_ranges_are_206_with_content_range_and_the_exact_bytes(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        video_id, whole = await archived_video(stack)
        size = len(whole)
        assert size > 300

        full = await stack.api.get(f"/v1/videos/{video_id}/content")
        assert full.headers["accept-ranges"] == "bytes"
        assert full.headers["content-length"] == str(size)

        for header, first, last in (
            ("bytes=0-99", 0, 99),
            ("bytes=100-", 100, size - 1),
            ("bytes=-50", size - 50, size - 1),
            (f"bytes=200-{size * 10}", 200, size - 1),  # an end past the end is clipped
            (f"bytes=-{size * 10}", 0, size - 1),  # a suffix longer than the file is the whole file
            ("bytes=7-7", 7, 7),
        ):
            response = await ranged(stack, video_id, header)
            assert response.status_code == 206, (header, response.text)
            assert response.headers["content-range"] == f"bytes {first}-{last}/{size}", header
            assert response.headers["content-length"] == str(last - first + 1), header
            assert response.headers["content-type"] == "video/mp4"
            assert response.headers["accept-ranges"] == "bytes"
            assert response.content == whole[first : last + 1], header

        thumbnail = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"})
        part = await ranged(stack, video_id, "bytes=0-11", variant="thumbnail")
        assert part.status_code == 206 and part.content == thumbnail.content[:12]
        assert part.headers["content-type"] == "image/webp"

    async def test_unsatisfiable_ignored_and_multiple_ranges(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id, whole = await archived_video(stack)
        size = len(whole)

        for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
            refused = await ranged(stack, video_id, header)
            assert refused.status_code == 416, (header, refused.text)
            assert refused.headers["content-range"] == f"bytes */{size}"
            error = refused.json()["error"]
            assert error["code"] == "range_not_satisfiable" and error["type"] == "invalid_request_error"

        # Several ranges: the whole file (documented); a range we cannot parse, another unit, or an If-Range
        # (we hand out no validators, so none can match) is ignored, as RFC 9110 asks.
        for header, extra in (
            ("bytes=0-1,5-6", {}),
            ("bytes=abc", {}),
            ("bytes=9-3", {}),
            ("items=0-1", {}),
            ("bytes=0-9", {"if-range": '"some-etag"'}),
        ):
            response = await stack.api.get(f"/v1/videos/{video_id}/content", headers={"range": header, **extra})
            assert response.status_code == 200, (header, response.text)
            assert response.content == whole
            assert "content-range" not in response.headers

    async def test_before_archiving_range_is_ignored_and_said_so(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        response = await ranged(stack, video_id, "bytes=0-9")
        assert response.status_code == 200
        assert response.headers["accept-ranges"] == "none"
        assert len(response.content) > 10


class TestMissingArchivedCopy:
    async def test_an_object_missing_from_s3_is_a_clean_503_logged_once_at_error(
        self, archive_stack: ArchiveStack, caplog: pytest.LogCaptureFixture
    ) -> None:
        stack = archive_stack
        video_id, whole = await archived_video(stack)
        stack.storage._client.delete_object(
            Bucket=stack.settings.s3.bucket, Key=stack.storage.key_for(video_id, Variant.VIDEO)
        )
        caplog.set_level(logging.INFO)
        caplog.clear()  # what the worker said while archiving (other tests' jobs too, in a shared database)
        for attempt in range(2):
            for headers in ({}, {"range": "bytes=0-9"}):
                response = await stack.api.get(f"/v1/videos/{video_id}/content", headers=headers)
                assert response.status_code == 503, (attempt, response.text)
                error = response.json()["error"]
                assert error["code"] == "asset_unavailable" and error["type"] == "server_error"
                assert video_id in error["message"] and "videos/" not in error["message"]
                assert int(response.headers["retry-after"]) > 0
        errors = [
            record
            for record in caplog.records
            if record.levelno >= logging.ERROR and record.name in ("app.videos.service", "app.core.errors")
        ]
        assert len(errors) == 1, [record.getMessage() for record in errors]
        assert video_id in errors[0].getMessage() and errors[0].exc_info is None
        # The other variants are still served.
        thumbnail = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"})
        assert thumbnail.status_code == 200
        assert hashlib.sha256(whole).hexdigest() == (await assets(stack, video_id))["video"].sha256

    async def test_an_asset_the_audit_marked_lost_is_a_404_asset_lost(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id, _ = await archived_video(stack)
        async with stack.database.sessionmaker.begin() as session:
            await session.execute(
                update(Asset).where(Asset.video_id == video_id, Asset.variant == "video").values(state="lost")
            )
        response = await stack.api.get(f"/v1/videos/{video_id}/content")
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "asset_lost" and error["param"] == "video_id"
        assert "lost" in error["message"] and "upstream" in error["message"].lower()
        assert video_id in error["message"]
