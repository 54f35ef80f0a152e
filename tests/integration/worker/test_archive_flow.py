"""The archive pipeline in process: facade → queue → worker → S3, the simulator as upstream.

docs/reliability.md rows: 19 (no regression), 21 (thin payload), 24 (window closed), 26 (round trip), 27 (truncation
retried), 33 (deadline), 34 (upstream errors), 35 (redirects), 36 (content sniffing), and the reconciler.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import queue, reconciler
from app.archive import service as archive_service
from app.archive.jobs import run_job
from app.core.config import Settings
from app.models import (
    ArchiveJob,
    Asset,
    CallbackDelivery,
    JobKind,
    Variant,
    Video,
    VideoOrigin,
    VideoStatus,
    WebhookEvent,
)
from tests.support.factories import make_video
from tests.support.worker import ArchiveStack


async def create_video(stack: ArchiveStack, prompt: str = "archive me") -> str:
    response = await stack.api.post("/v1/videos", files={"prompt": (None, prompt)})
    assert response.status_code == 200, response.text
    video_id: str = response.json()["id"]
    return video_id


async def wait_upstream_completed(stack: ArchiveStack, video_id: str, timeout: float = 20) -> dict[str, Any]:
    upstream_id = await stack.upstream_id(video_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await stack.simulator.get(f"/v1/videos/{upstream_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("upstream did not finish")


async def upstream_sha256(stack: ArchiveStack, video_id: str, variant: str) -> str:
    upstream_id = await stack.upstream_id(video_id)
    response = await stack.simulator.get(f"/v1/videos/{upstream_id}/content", params={"variant": variant})
    assert response.status_code == 200
    return hashlib.sha256(response.content).hexdigest()


async def assets(stack: ArchiveStack, video_id: str) -> dict[str, Asset]:
    async with stack.database.sessionmaker() as session:
        rows = (await session.execute(select(Asset).where(Asset.video_id == video_id))).scalars().all()
        return {row.variant: row for row in rows}


async def jobs(stack: ArchiveStack, video_id: str) -> list[ArchiveJob]:
    async with stack.database.sessionmaker() as session:
        statement = select(ArchiveJob).where(ArchiveJob.video_id == video_id).order_by(ArchiveJob.id)
        return list((await session.execute(statement)).scalars().all())


async def enqueue_sync(stack: ArchiveStack, video_id: str) -> None:
    """What the webhook receiver does for a delivery about this video."""
    async with stack.database.sessionmaker.begin() as session:
        video = await session.get(Video, video_id)
        assert video is not None
        await archive_service.enqueue_sync(session, video=video, settings=stack.settings.worker)


def orphan_event(name: str, upstream_id: str) -> WebhookEvent:
    """A `video.completed` delivery kept as an orphan: it arrived before any video of ours had `upstream_id`."""
    return WebhookEvent(
        webhook_id=f"wh_{name}",
        event_id=f"evt_{name}",
        event_type="video.completed",
        upstream_video_id=upstream_id,
        outcome="orphan",
        body="{}",
    )


class TestHappyPath:
    async def test_every_variant_lands_in_s3_byte_for_byte_and_is_served_after_upstream_expiry(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()

        archived = await assets(stack, video_id)
        assert {variant: asset.state for variant, asset in archived.items()} == {
            "video": "archived",
            "thumbnail": "archived",
            "spritesheet": "archived",
        }
        for variant, asset in archived.items():
            assert asset.sha256 == await upstream_sha256(stack, video_id, variant)
            assert asset.s3_key == stack.storage.key_for(video_id, Variant(asset.variant))
        retrieved = (await stack.api.get(f"/v1/videos/{video_id}")).json()
        assert retrieved["archive"]["video"]["sha256"] == archived["video"].sha256
        assert retrieved["archive"]["video"]["bytes"] == archived["video"].bytes

        # Upstream forgets the video: our copy is still served, from S3.
        upstream_id = await stack.upstream_id(video_id)
        assert (await stack.simulator.post(f"/_sim/videos/{upstream_id}/expire")).status_code == 200
        gone = await stack.simulator.get(f"/v1/videos/{upstream_id}/content")
        assert gone.status_code == 404
        for variant, content_type in (
            ("video", "video/mp4"),
            ("thumbnail", "image/webp"),
            ("spritesheet", "image/jpeg"),
        ):
            served = await stack.api.get(f"/v1/videos/{video_id}/content", params={"variant": variant})
            assert served.status_code == 200
            assert served.headers["content-type"] == content_type
            assert hashlib.sha256(served.content).hexdigest() == archived[variant].sha256

    async def test_presigned_urls_read_the_archive_straight_from_s3(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        assert (await stack.api.get(f"/v1/videos/{video_id}/assets")).json()["data"] == []  # nothing archived yet
        await wait_upstream_completed(stack, video_id)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        links = (await stack.api.get(f"/v1/videos/{video_id}/assets")).json()["data"]
        assert [link["variant"] for link in links] == ["video", "thumbnail", "spritesheet"]
        archived = await assets(stack, video_id)
        async with httpx.AsyncClient() as plain:  # no credentials: the URL alone grants the read
            for link in links:
                response = await plain.get(link["url"])
                assert response.status_code == 200
                assert hashlib.sha256(response.content).hexdigest() == archived[link["variant"]].sha256
                assert response.headers["content-type"] == link["content_type"]
            tampered = links[0]["url"].replace("video.mp4", "thumbnail.webp")
            assert (await plain.get(tampered)).status_code == 403

    async def test_a_poll_that_sees_completion_queues_the_downloads(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        assert (await stack.api.get(f"/v1/videos/{video_id}")).json()["status"] == "completed"
        queued = [job for job in await jobs(stack, video_id) if job.kind == "download"]
        assert sorted(job.variant for job in queued) == ["spritesheet", "thumbnail", "video"]  # type: ignore[type-var]

    async def test_the_reconciler_archives_a_video_nobody_polled_or_notified(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await asyncio.sleep(0.3)  # older than one reconcile interval: due for a re-read
        report = await reconciler.reconcile_once(stack.context)
        assert report.syncs_queued >= 1
        await stack.worker().run_until_idle()
        assert {asset.state for asset in (await assets(stack, video_id)).values()} == {"archived"}

    async def test_a_create_cut_off_before_upstream_answered_is_settled_as_unknown(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        cut_off, recent = await create_video(stack), await create_video(stack)
        limit = stack.settings.worker.unsubmitted_after_seconds
        # What a crash between the intent's commit and upstream's answer leaves: queued, no upstream id. The
        # prompt is one upstream never saw, so its list holds no match (the create never reached it).
        async with stack.database.sessionmaker.begin() as session:
            for video_id, age in ((cut_off, limit + 60), (recent, limit - 60)):
                video = await session.get(Video, video_id)
                assert video is not None
                video.upstream_id, video.status, video.progress = None, VideoStatus.QUEUED, 0
                video.prompt = f"never reached upstream {video_id}"
                video.callback_url = "https://hooks.example.com/videos"
                # Sent when it was created (the direct path), so as long ago.
                video.created_at = video.submitted_at = datetime.now(UTC) - timedelta(seconds=age)
        report = await reconciler.reconcile_once(stack.context)
        assert report.submissions_settled == 1
        async with stack.database.sessionmaker() as session:
            settled, untouched = await session.get(Video, cut_off), await session.get(Video, recent)
            assert settled is not None and untouched is not None
            assert (settled.status, settled.error_code) == ("failed", "upstream_submission_unknown")
            assert (untouched.status, untouched.error_code) == ("queued", None)
            deliveries = (
                (await session.execute(select(CallbackDelivery).where(CallbackDelivery.video_id == cut_off)))
                .scalars()
                .all()
            )
        assert [delivery.event_type for delivery in deliveries] == ["video.failed"]
        body = (await stack.api.get(f"/v1/videos/{cut_off}")).json()
        assert body["status"] == "failed" and body["error"]["code"] == "upstream_submission_unknown"
        assert (await reconciler.reconcile_once(stack.context)).submissions_settled == 0

    async def cut_off(self, stack: ArchiveStack, *video_ids: str) -> None:
        """Make these videos look as a SIGKILLed API leaves them: no upstream id, queued, old enough to settle."""
        age = stack.settings.worker.unsubmitted_after_seconds + 60
        async with stack.database.sessionmaker.begin() as session:
            for video_id in video_ids:
                video = await session.get(Video, video_id)
                assert video is not None
                video.upstream_id, video.status, video.progress = None, VideoStatus.QUEUED, 0
                video.callback_url = "https://hooks.example.com/videos"
                video.created_at = video.submitted_at = datetime.now(UTC) - timedelta(seconds=age)

    async def test_a_cut_off_create_that_upstream_rendered_is_found_and_archived(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        video_id = await create_video(stack, prompt=f"cut off {time.time_ns()}")
        upstream_id = await stack.upstream_id(video_id)
        await wait_upstream_completed(stack, video_id)
        await self.cut_off(stack, video_id)

        report = await reconciler.reconcile_once(stack.context)
        assert (report.submissions_adopted, report.submissions_settled) == (1, 0)
        async with stack.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            assert (video.upstream_id, video.status, video.error_code) == (upstream_id, "completed", None)
            deliveries = (
                (await session.execute(select(CallbackDelivery).where(CallbackDelivery.video_id == video_id)))
                .scalars()
                .all()
            )
        assert "video.failed" not in [delivery.event_type for delivery in deliveries]
        await stack.worker().run_until_idle()
        assert {asset.state for asset in (await assets(stack, video_id)).values()} == {"archived"}
        assert (await reconciler.reconcile_once(stack.context)).submissions_adopted == 0

    async def test_a_render_another_video_owns_is_never_adopted(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        prompt = f"same prompt {time.time_ns()}"
        owner, cut_off = await create_video(stack, prompt=prompt), await create_video(stack, prompt=prompt)
        owner_upstream, cut_off_upstream = await stack.upstream_id(owner), await stack.upstream_id(cut_off)
        await self.cut_off(stack, cut_off)

        # Two renders upstream match the prompt, but one is the owner's: the other can only be ours.
        report = await reconciler.reconcile_once(stack.context)
        assert report.submissions_adopted == 1
        assert await stack.upstream_id(cut_off) == cut_off_upstream != owner_upstream
        assert await stack.upstream_id(owner) == owner_upstream

    async def test_a_cut_off_edit_is_settled_even_with_a_lone_match(self, archive_stack: ArchiveStack) -> None:
        # Upstream's list does not say what an edit or extension was made from, so a match by prompt and length
        # could be another render: the same lone match that adopts a create settles an edit as unknown.
        stack = archive_stack
        video_id = await create_video(stack, prompt=f"edit cut off {time.time_ns()}")
        await wait_upstream_completed(stack, video_id)
        await self.cut_off(stack, video_id)
        async with stack.database.sessionmaker.begin() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            video.origin = VideoOrigin.EDIT

        report = await reconciler.reconcile_once(stack.context)
        assert (report.submissions_adopted, report.submissions_settled) == (0, 1)
        body = (await stack.api.get(f"/v1/videos/{video_id}")).json()
        assert body["status"] == "failed" and body["error"]["code"] == "upstream_submission_unknown"

    async def test_identical_cut_off_creates_are_settled_not_guessed(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        prompt = f"twins {time.time_ns()}"
        first, second = await create_video(stack, prompt=prompt), await create_video(stack, prompt=prompt)
        await self.cut_off(stack, first, second)

        report = await reconciler.reconcile_once(stack.context)
        assert (report.submissions_adopted, report.submissions_settled) == (0, 2)
        for video_id in (first, second):
            body = (await stack.api.get(f"/v1/videos/{video_id}")).json()
            assert body["status"] == "failed" and body["error"]["code"] == "upstream_submission_unknown"

    async def test_an_orphan_webhook_is_matched_once_the_video_is_ours(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        upstream_id = await stack.upstream_id(video_id)
        # The delivery beat our create row's commit: the receiver kept it as an orphan.
        async with stack.database.sessionmaker.begin() as session:
            session.add(orphan_event(video_id, upstream_id))
        await reconciler.reconcile_once(stack.context)
        async with stack.database.sessionmaker() as session:
            event = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.webhook_id == f"wh_{video_id}"))
            ).scalar_one()
        assert (event.outcome, event.video_id) == ("matched", video_id)
        assert [job.kind for job in await jobs(stack, video_id)] == ["sync"]

    async def test_orphans_that_never_match_do_not_starve_one_that_does(
        self, archive_stack: ArchiveStack, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Another project's deliveries stay orphans for ever; a pass looks at a bounded number of orphans, and
        # those must be ones that can match, or one that can is never reached once enough foreign ones pile up.
        stack = archive_stack
        monkeypatch.setattr(reconciler, "BATCH", 3)
        tag = time.time_ns()
        async with stack.database.sessionmaker.begin() as session:
            for index in range(reconciler.BATCH * 3):
                # Ahead of ours both in the table and in the orphans' index (by upstream id).
                session.add(orphan_event(f"foreign_{tag}_{index}", f"another_project_{tag}_{index}"))
        video_id = await create_video(stack)
        async with stack.database.sessionmaker.begin() as session:
            session.add(orphan_event(video_id, await stack.upstream_id(video_id)))
        await reconciler.reconcile_once(stack.context)
        async with stack.database.sessionmaker() as session:
            outcomes = dict(
                (
                    await session.execute(
                        select(WebhookEvent.webhook_id, WebhookEvent.outcome).where(
                            WebhookEvent.webhook_id.in_([f"wh_{video_id}", f"wh_foreign_{tag}_0"])
                        )
                    )
                ).all()
            )
        assert outcomes == {f"wh_{video_id}": "matched", f"wh_foreign_{tag}_0": "orphan"}
        assert [job.kind for job in await jobs(stack, video_id)] == ["sync"]


class TestWhatUpstreamSays:
    async def test_a_completed_event_for_a_video_still_rendering_downloads_nothing(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        await stack.simulator.patch("/_sim/config", json={"render_seconds": 30})
        try:
            video_id = await create_video(stack)
            await enqueue_sync(stack, video_id)
            await stack.worker().run_until_idle()
        finally:
            await stack.simulator.patch("/_sim/config", json={"render_seconds": 0.3})
        assert await assets(stack, video_id) == {}
        [sync] = await jobs(stack, video_id)
        assert sync.state == "succeeded" and "still" in str(sync.last_error)

    async def test_a_failed_video_records_the_error_and_downloads_nothing(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack, prompt="a forbidden thing")
        await wait_upstream_completed(stack, video_id)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        async with stack.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
        assert video is not None
        assert (video.status, video.error_code) == ("failed", "moderation_blocked")
        assert await assets(stack, video_id) == {}

    async def test_a_late_failed_event_after_archiving_changes_nothing(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        await enqueue_sync(stack, video_id)  # a duplicate or reordered event arrives later
        await stack.worker().run_until_idle()
        async with stack.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
        assert video is not None and video.status == "completed"
        assert {asset.state for asset in (await assets(stack, video_id)).values()} == {"archived"}
        assert len([job for job in await jobs(stack, video_id) if job.kind == "download"]) == 3

    async def test_a_video_whose_window_already_closed_is_expired_with_a_reason(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        await stack.simulator.patch("/_sim/config", json={"ttl_seconds": 0})
        try:
            video_id = await create_video(stack)
            await wait_upstream_completed(stack, video_id)
            await enqueue_sync(stack, video_id)
            worker = stack.worker()
            await worker.run_until_idle()
            await worker.maintain()
        finally:
            await stack.simulator.patch("/_sim/config", json={"ttl_seconds": 3600})
        archived = await assets(stack, video_id)
        assert {asset.state for asset in archived.values()} == {"expired"}
        assert all("window closed" in str(asset.error) for asset in archived.values())

    async def test_maintenance_settles_several_videos_in_one_order(
        self, archive_stack: ArchiveStack, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Several videos' overdue downloads expired in one pass are settled (their outcome locks taken) in id
        order, whatever order the queue holds them in: two workers' passes then never deadlock on each other."""
        stack = archive_stack
        settled: list[str] = []
        original = archive_service.settle_download_outcome

        async def recording(session: AsyncSession, *, video_id: str, settings: Settings) -> None:
            settled.append(video_id)
            await original(session, video_id=video_id, settings=settings)

        monkeypatch.setattr(archive_service, "settle_download_outcome", recording)
        video_ids = sorted([(await make_video(stack.database)).id for _ in range(4)], reverse=True)
        overdue = datetime.now(UTC) - timedelta(minutes=1)
        async with stack.database.sessionmaker.begin() as session:
            for video_id in video_ids:  # queued newest id first: the opposite of the order we want
                await queue.enqueue(
                    session, kind=JobKind.DOWNLOAD, video_id=video_id, variant="video", deadline=overdue, max_attempts=3
                )
        await stack.worker().maintain()
        mine = [video_id for video_id in settled if video_id in video_ids]
        assert sorted(mine) == sorted(video_ids)
        assert mine == sorted(mine)


class TestContentFaults:
    async def test_an_html_page_served_as_the_video_fails_the_asset_after_its_attempts(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await stack.set_faults(content_html_error=True)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        archived = await assets(stack, video_id)
        assert archived["video"].state == "failed"
        assert "not a valid video" in str(archived["video"].error)
        assert await stack.storage.head(stack.storage.key_for(video_id, Variant.VIDEO)) is None

    async def test_a_truncated_download_is_retried_and_then_lands_whole(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await stack.set_faults(content_truncate_after_bytes=100, content_faults_remaining=1)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        archived = await assets(stack, video_id)
        assert {asset.state for asset in archived.values()} == {"archived"}
        download_attempts = sum(job.attempts for job in await jobs(stack, video_id) if job.kind == "download")
        assert download_attempts == 4  # three variants, one of them twice
        for variant, asset in archived.items():
            assert asset.sha256 == await upstream_sha256(stack, video_id, variant)

    async def test_upstream_5xx_on_content_is_retried(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await stack.set_faults(server_error_next=4, burst_routes=["download_content"])
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        assert {asset.state for asset in (await assets(stack, video_id)).values()} == {"archived"}

    async def test_content_gone_before_the_deadline_is_confirmed_with_a_get_then_expired(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await enqueue_sync(stack, video_id)
        # Run only the sync: it sees the video completed with a window open and queues the downloads.
        async with stack.database.sessionmaker.begin() as session:
            [sync] = await queue.claim(session, worker_id="t", limit=1, lease_seconds=30)
        await run_job(stack.context, sync)
        assert len([job for job in await jobs(stack, video_id) if job.kind == "download"]) == 3
        # Then upstream forgets the files before the downloads run: 404, confirmed by a GET, expired.
        upstream_id = await stack.upstream_id(video_id)
        assert (await stack.simulator.post(f"/_sim/videos/{upstream_id}/expire")).status_code == 200
        await stack.worker().run_until_idle()
        archived = await assets(stack, video_id)
        assert {asset.state for asset in archived.values()} == {"expired"}
        assert all("no longer serves" in str(asset.error) for asset in archived.values())
        assert all(job.attempts == 1 for job in await jobs(stack, video_id))  # no retry loop on a 404

    async def test_a_sync_that_meets_a_404_fails_the_video_and_tells_the_caller(
        self, archive_stack: ArchiveStack
    ) -> None:
        # Upstream forgets a render before it finished here: failed `upstream_not_found`, with a `video.failed`
        # callback like every other failure path (this one once wrote the row directly and told nobody).
        stack = archive_stack
        video_id = await create_video(stack)
        async with stack.database.sessionmaker.begin() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            video.callback_url = "https://hooks.example.com/videos"
        upstream_id = await stack.upstream_id(video_id)
        assert (await stack.simulator.delete(f"/v1/videos/{upstream_id}")).status_code == 200
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        async with stack.database.sessionmaker() as session:
            video = await session.get(Video, video_id)
            assert video is not None
            assert (video.status, video.error_code) == ("failed", "upstream_not_found")
            deliveries = (
                (await session.execute(select(CallbackDelivery).where(CallbackDelivery.video_id == video_id)))
                .scalars()
                .all()
            )
        assert [delivery.event_type for delivery in deliveries] == ["video.failed"]

    async def test_a_redirect_to_a_host_outside_the_allow_list_is_not_followed(
        self, archive_stack: ArchiveStack
    ) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await stack.set_faults(content_redirect=True, content_redirect_host="metadata.internal")
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        archived = await assets(stack, video_id)
        assert {asset.state for asset in archived.values()} == {"failed"}
        assert all("not allowed" in str(asset.error) for asset in archived.values())

    async def test_a_same_host_redirect_is_followed(self, archive_stack: ArchiveStack) -> None:
        stack = archive_stack
        video_id = await create_video(stack)
        await wait_upstream_completed(stack, video_id)
        await stack.set_faults(content_redirect=True)
        await enqueue_sync(stack, video_id)
        await stack.worker().run_until_idle()
        assert {asset.state for asset in (await assets(stack, video_id)).values()} == {"archived"}
