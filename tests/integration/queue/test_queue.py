"""The Postgres queue's SQL against a real server (docs/reliability.md rows 33, 38, 39, 40, 42, 43, 47, 48)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from app.archive import queue
from app.core.db import Database
from app.models import JobKind, JobState
from tests.support.factories import make_video

LEASE = 30.0


async def enqueue_download(
    db: Database, video_id: str, *, variant: str = "video", deadline: datetime | None = None
) -> int | None:
    async with db.sessionmaker.begin() as session:
        return await queue.enqueue(
            session, kind=JobKind.DOWNLOAD, video_id=video_id, variant=variant, deadline=deadline, max_attempts=3
        )


async def claim(db: Database, worker: str = "w1", limit: int = 1) -> list[queue.ClaimedJob]:
    async with db.sessionmaker.begin() as session:
        return await queue.claim(session, worker_id=worker, limit=limit, lease_seconds=LEASE)


async def set_lease(db: Database, job_id: int, seconds_from_now: float) -> None:
    async with db.sessionmaker.begin() as session:
        await session.execute(
            text("UPDATE archive_jobs SET lease_until = now() + make_interval(secs => :s) WHERE id = :id"),
            {"s": seconds_from_now, "id": job_id},
        )


async def job_row(db: Database, job_id: int) -> dict[str, object]:
    async with db.sessionmaker() as session:
        row = (
            (await session.execute(text("SELECT * FROM archive_jobs WHERE id = :id"), {"id": job_id})).mappings().one()
        )
        return dict(row)


async def taken_over(db: Database, video_id: str) -> tuple[queue.ClaimedJob, queue.ClaimedJob]:
    """A download of `video_id` claimed by a worker whose lease lapsed (the zombie), rescued and claimed again by
    another: (the zombie's claim, the current one)."""
    await enqueue_download(db, video_id)
    [zombie] = await claim(db, worker="zombie")
    await set_lease(db, zombie.id, -1)
    async with db.sessionmaker.begin() as session:
        await queue.rescue_stalled(session)
    [current] = await claim(db, worker="healthy")
    assert current.id == zombie.id and current.lease_token != zombie.lease_token
    return zombie, current


class TestEnqueue:
    async def test_enqueue_twice_while_pending_makes_one_row(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        assert await enqueue_download(qdb, video) is not None
        assert await enqueue_download(qdb, video) is None
        assert await enqueue_download(qdb, video, variant="thumbnail") is not None

    async def test_concurrent_enqueues_of_one_asset_make_one_row(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        results = await asyncio.gather(*(enqueue_download(qdb, video) for _ in range(20)))
        assert sum(result is not None for result in results) == 1
        async with qdb.sessionmaker() as session:
            count = await session.scalar(text("SELECT count(*) FROM archive_jobs WHERE video_id = :v"), {"v": video})
        assert count == 1

    async def test_a_finished_job_does_not_block_a_new_one(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        await enqueue_download(qdb, video)
        [job] = await claim(qdb)
        async with qdb.sessionmaker.begin() as session:
            assert await queue.finish(session, job, state=JobState.FAILED, error="x")
        assert await enqueue_download(qdb, video) is not None


class TestClaim:
    async def test_twenty_claimers_take_every_one_of_ten_thousand_jobs_exactly_once(self, qdb: Database) -> None:
        owner = (await make_video(qdb)).id  # one real row gives us a caller to own the bulk videos
        async with qdb.sessionmaker.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO videos (id, caller_id, upstream_id, model, size, seconds, prompt, status, progress)"
                    " SELECT 'bulk_' || n, caller_id, 'up_bulk_' || n, 'sora-2', '720x1280', '4', 'p', 'completed', 100"
                    " FROM videos, generate_series(1, 2500) AS n WHERE videos.id = :owner"
                ),
                {"owner": owner},
            )
            await session.execute(
                text(
                    "INSERT INTO archive_jobs (kind, video_id, variant, state, attempts, max_attempts)"
                    " SELECT 'download', v.id, variant, 'queued', 0, 3 FROM videos v,"
                    " unnest(ARRAY['video', 'thumbnail', 'spritesheet']) AS variant WHERE v.id LIKE 'bulk_%'"
                    " UNION ALL SELECT 'sync', v.id, NULL, 'queued', 0, 3 FROM videos v WHERE v.id LIKE 'bulk_%'"
                )
            )
        claimed: list[int] = []

        async def claimer(name: str) -> None:
            while jobs := await claim(qdb, worker=name, limit=10):
                claimed.extend(job.id for job in jobs)

        await asyncio.gather(*(claimer(f"w{n}") for n in range(20)))
        assert len(claimed) == 10_000
        assert len(set(claimed)) == 10_000
        async with qdb.sessionmaker() as session:
            states = await queue.job_states(session)
        assert states == {"running": 10_000}

    async def test_a_job_past_its_deadline_is_never_claimed_and_expires(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        await enqueue_download(qdb, video, deadline=datetime.now(UTC) - timedelta(seconds=1))
        assert await claim(qdb) == []
        async with qdb.sessionmaker.begin() as session:
            [expired] = await queue.expire_overdue(session)
        assert (expired.video_id, expired.state) == (video, JobState.EXPIRED)

    async def test_lease_is_measured_on_the_database_clock(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        await enqueue_download(qdb, video)
        [job] = await claim(qdb)
        async with qdb.sessionmaker() as session:
            remaining = await session.scalar(
                text("SELECT extract(epoch FROM lease_until - now()) FROM archive_jobs WHERE id = :id"), {"id": job.id}
            )
        assert LEASE - 5 < float(remaining) <= LEASE
        # No query of the queue takes a time from the worker: nothing a skewed worker clock could move.
        assert all(":now" not in sql and "now_" not in sql for sql in queue.queries().values())


class TestLeases:
    @pytest.mark.parametrize(("lease_left", "rescued"), [(2.0, False), (-0.5, True)])
    async def test_only_lapsed_leases_are_rescued(self, qdb: Database, lease_left: float, rescued: bool) -> None:
        video = (await make_video(qdb)).id
        await enqueue_download(qdb, video)
        [job] = await claim(qdb)
        await set_lease(qdb, job.id, lease_left)
        async with qdb.sessionmaker.begin() as session:
            refs = await queue.rescue_stalled(session)
        assert [ref.id for ref in refs] == ([job.id] if rescued else [])
        assert (await job_row(qdb, job.id))["state"] == ("queued" if rescued else "running")

    async def test_a_lapsed_lease_on_the_last_attempt_is_dead_not_requeued(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        await enqueue_download(qdb, video)
        for _ in range(3):  # max_attempts = 3: claim, lapse, rescue
            [job] = await claim(qdb)
            await set_lease(qdb, job.id, -1)
            async with qdb.sessionmaker.begin() as session:
                await queue.rescue_stalled(session)
        row = await job_row(qdb, job.id)
        assert row["state"] == "dead"
        assert "lease lapsed" in str(row["last_error"])
        assert await claim(qdb) == []

    async def test_a_zombie_cannot_change_a_job_taken_over_by_another_worker(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        zombie, current = await taken_over(qdb, video)
        async with qdb.sessionmaker.begin() as session:
            assert not await queue.heartbeat(session, zombie, lease_seconds=LEASE)
            assert not await queue.finish(session, zombie, state=JobState.FAILED, error="zombie")
            assert not await queue.retry(session, zombie, delay_seconds=0, error="zombie")
            assert not await queue.release(session, zombie)
        async with qdb.sessionmaker.begin() as session:
            assert await queue.finish(session, current, state=JobState.SUCCEEDED)
        row = await job_row(qdb, current.id)
        assert (row["state"], row["last_error"]) == ("succeeded", None)

    async def test_release_hands_the_job_back_without_using_an_attempt(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        await enqueue_download(qdb, video)
        [job] = await claim(qdb)
        async with qdb.sessionmaker.begin() as session:
            assert await queue.release(session, job)
        [again] = await claim(qdb)
        assert again.attempts == 1


async def add_asset(db: Database, video_id: str, *, variant: str = "video", state: str = "pending") -> None:
    async with db.sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO assets (id, video_id, variant, state) VALUES (gen_random_uuid(), :video, :variant, :state)"
            ),
            {"video": video_id, "variant": variant, "state": state},
        )


async def asset_state(db: Database, video_id: str, variant: str = "video") -> str:
    async with db.sessionmaker() as session:
        found = await session.execute(
            text("SELECT state FROM assets WHERE video_id = :video AND variant = :variant"),
            {"video": video_id, "variant": variant},
        )
        return str(found.scalar_one())


async def lease_left(db: Database, job_id: int) -> float:
    async with db.sessionmaker() as session:
        found = await session.execute(
            text("SELECT extract(epoch FROM lease_until - now()) FROM archive_jobs WHERE id = :id"), {"id": job_id}
        )
        return float(found.scalar_one())


class TestStartDownload:
    """A download's start, one statement alone on the driver: the lease proved and extended, the asset marked."""

    @pytest.mark.parametrize(("before", "after"), [("pending", "downloading"), ("archived", "archived")])
    async def test_the_lease_is_extended_and_the_asset_marked_unless_archived(
        self, qdb: Database, before: str, after: str
    ) -> None:
        video = (await make_video(qdb)).id
        await add_asset(qdb, video, state=before)
        await add_asset(qdb, video, variant="thumbnail")  # another variant's asset is not this job's
        await enqueue_download(qdb, video)
        [job] = await claim(qdb)
        await set_lease(qdb, job.id, 2)
        assert await queue.start_download(qdb, job, lease_seconds=LEASE)
        assert await lease_left(qdb, job.id) > LEASE - 5
        assert await asset_state(qdb, video) == after  # an archived copy stays served until the new one lands
        assert await asset_state(qdb, video, "thumbnail") == "pending"

    async def test_a_zombie_marks_nothing(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        await add_asset(qdb, video)
        zombie, _current = await taken_over(qdb, video)
        assert not await queue.start_download(qdb, zombie, lease_seconds=LEASE)
        assert await asset_state(qdb, video) == "pending"


class TestConnectionLoss:
    async def test_a_claim_whose_connection_dies_before_commit_leaves_the_job_queued(self, qdb: Database) -> None:
        video = (await make_video(qdb)).id
        job_id = await enqueue_download(qdb, video)
        session = qdb.sessionmaker()
        with pytest.raises((DBAPIError, InterfaceError, OperationalError)):
            async with session.begin():
                claimed = await queue.claim(session, worker_id="doomed", limit=1, lease_seconds=LEASE)
                assert [job.id for job in claimed] == [job_id]
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                async with qdb.sessionmaker.begin() as killer:
                    await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                await asyncio.sleep(0.1)
        await session.close()
        row = await job_row(qdb, job_id)  # type: ignore[arg-type]
        assert (row["state"], row["attempts"], row["lease_token"]) == ("queued", 0, None)
